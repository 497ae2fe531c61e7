"""The API's own objects: sessions, tasks, events and messages."""
