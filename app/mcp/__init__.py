"""The Model Context Protocol server: docproc's tools and documents for AI assistants and agents."""
