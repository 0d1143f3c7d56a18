"""The OpenAI-compatible server (layer 4): request schema, response side, the request batcher, the FastAPI app, the
playground page (``playground``, files in ``static/``).

    >>> app = create_app(model, tokenizer, ServeConfig(model_name="smollm2-135m-mas"))
"""

from .app import ServeConfig, create_app, prompt_example

__all__ = ["ServeConfig", "create_app", "prompt_example"]
