"""OpenAI chat completions ⇄ Anthropic messages, as plain functions over JSON-shaped dicts (no Django).

Import from the submodule that holds the name: ``requests`` (request bodies), ``responses``
(non-streamed bodies and usage counts), ``streams`` (the two stream translators), ``errors``.
"""
