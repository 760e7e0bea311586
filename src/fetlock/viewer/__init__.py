"""The diagnostic image viewer: its page, service worker and offline support."""
