"""Socket.IO surface: validate, write intent, answer."""
