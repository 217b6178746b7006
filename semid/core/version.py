"""semid's version: in the bottom layer, so that artifacts can record it without importing the app."""
__version__ = "0.1.0"
