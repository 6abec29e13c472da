"""SQL templates of the campaigns package (read as package data)."""
