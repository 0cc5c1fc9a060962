"""The catalog's views: its pages for people (models, discover, downloads, playground) and its admin pages."""
