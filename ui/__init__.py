"""What every page shares and only draws with: the login guard, session state, caches and upload decoding."""
