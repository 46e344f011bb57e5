"""Answers from retrieved passages: the typed answer flow, prompts, the extractive fallback and the
chat-completions adapter for an LLM."""
