"""The service layer: plain async functions over a session, shared by API and activities."""
