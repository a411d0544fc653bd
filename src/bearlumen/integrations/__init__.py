"""Framework integrations: each module imports its framework only when it is itself imported.

    from bearlumen.integrations.langchain import UsageCallbackHandler
    from bearlumen.integrations.litellm import UsageLogger

`pip install "bearlumen[integrations]"` adds the frameworks; see docs/llm.md.
"""
