"""After deployment: what the logged predictions say (the review set; drift checks)."""
