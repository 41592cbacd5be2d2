"""The app's own Streamlit components (browser code shipped in this repository, nothing from a CDN)."""
