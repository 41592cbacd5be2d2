"""What a shared server needs: who may log in, private upload folders, and data paths kept inside the data folders."""
