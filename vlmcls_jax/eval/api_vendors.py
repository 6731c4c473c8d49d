"""One request to a proprietary VLM through its vendor's official SDK (`openai`, `anthropic`, `google-genai`;
the optional extra `api`), built as the study's `main_results/main_api.py` and `imagewikiqa/main_api.py`
(yuhui-zh15/VLMClassifier) built it:

  OpenAI     `client.chat.completions.create(model, messages=[{"role": "user", "content": [{"type": "text",
             "text": question}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}])`:
             text first, then the image; no temperature and no max_tokens (the API's defaults).
  Anthropic  `client.messages.create(model, max_tokens=1024, messages=[{"role": "user", "content": [{"type":
             "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": ...}}, {"type": "text",
             "text": question}]}])`: image first, then the text; max_tokens 1024; no temperature.
  Google     `generate_content([question, image])`: text first, then the image; no generation config.  The
             study used the older `google.generativeai` SDK with a PIL image (`Image.open(item["image"])`),
             which that SDK encoded itself (how differed between its versions); this port sends the file's
             bytes like the other two, through `google-genai` (`types.Part.from_bytes(..., "image/jpeg")`).

Two differences from the study's code, on purpose: its retry loop (`for i in range(3): try: ... except: ...
continue`) has no `break`, so every example was sent three times and the last reply kept; here each request is
sent once (retried only on failure, `api_model`).  And the model names are the paper's Table 6 versions
(the code asked for the aliases "gpt-4-turbo" and "gemini-pro-vision").

The image: the study sent the file's own bytes, base64-encoded, labelled image/jpeg, never resized (its
datasets are JPEG files); `encode_image` does the same, re-encodes non-JPEG files as JPEG (so the label is
true), and resizes only when `max_image_side` asks for it.  Temperature and max tokens: None / 0 keep the
study's (the vendor defaults above); set them to override.

    vendor = make_vendor("openai", "gpt-4-turbo-2024-04-09", api_key, base_url="", timeout=120)
    reply = vendor.ask(question, jpeg_bytes, temperature=None, max_tokens=0)
    # Reply(text, finish_reason, input_tokens, output_tokens)

Keys come from the environment only (`KEY_ENV`); they are handed to the SDK client and never stored,
printed or written (`scrub` removes a key from any message that is).
"""

from __future__ import annotations

import base64
import dataclasses
import io

from PIL import Image

# vendor -> the environment variable its key is read from (the study's names)
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "google": "GOOGLE_API_KEY"}

# The study's settings (main_api.py): only Claude sets max_tokens; nobody sets a temperature.
STUDY_MAX_TOKENS = {"openai": 0, "anthropic": 1024, "google": 0}   # 0: the API's default

# USD per million (input, output) tokens: the vendors' list prices for the paper's versions (Table 6) when
# the study ran (spring 2024).  Other models: set config.model.api.price_input / price_output.
PRICES = {
    "gpt-4-turbo-2024-04-09": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "claude-3-opus-20240229": (15.0, 75.0),
    "gemini-1.0-pro-vision-001": (0.5, 1.5),
    "gemini-pro-vision": (0.5, 1.5),
}

# A re-encoded image (not a JPEG file, or resized) is saved at PIL's default JPEG quality.
PIL_DEFAULT_QUALITY = 75


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str                 # "" when the vendor returned no text (e.g. a safety block; see finish_reason)
    finish_reason: str
    input_tokens: int
    output_tokens: int


def encode_image(path: str, max_side: int = 0, reencode: bool = False) -> bytes:
    """The JPEG bytes sent for an image file: the file itself when it is a JPEG (the study's way), else (or with
    `reencode`, or when `max_side` > 0 and the image is larger) the image re-encoded by PIL as RGB JPEG at its
    default quality, after resizing its longer side to `max_side`."""
    with open(path, "rb") as f:
        data = f.read()
    with Image.open(io.BytesIO(data)) as image:
        big = max_side > 0 and max(image.size) > max_side
        if image.format == "JPEG" and not big and not reencode:
            return data
        image = image.convert("RGB")
        if big:
            image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=PIL_DEFAULT_QUALITY)
        return buffer.getvalue()


def scrub(text: str, secret: str | None) -> str:
    """`text` with the API key replaced, for anything printed or raised."""
    return text.replace(secret, "<api key>") if secret else text


def error_status(error: BaseException) -> int | None:
    """The HTTP status of an SDK error (openai / anthropic: .status_code; google-genai: .code), else None."""
    for name in ("status_code", "code"):
        value = getattr(error, name, None)
        if isinstance(value, int):
            return value
    return None


def retry_after(error: BaseException) -> float | None:
    """The server's Retry-After (seconds) on an error response, when it sent one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(headers.get("retry-after")) if headers.get("retry-after") is not None else None
    except (TypeError, ValueError):
        return None


class Vendor:
    """One vendor's SDK client for one model.  `ask` sends one question and one JPEG (None: the question alone)
    and returns a `Reply`; errors are the SDK's own (`is_transient` says which to retry)."""

    name = ""

    def __init__(self, model: str, api_key: str, base_url: str = "", timeout: float = 120.0):
        self.model = model
        self.client = self._client(api_key, base_url or None, timeout)

    def is_transient(self, error: BaseException) -> bool:
        """Worth retrying: 408, 409, 429, any 5xx, or no HTTP answer at all (connection dropped, timeout)."""
        status = error_status(error)
        if status is not None:
            return status in (408, 409, 429) or status >= 500
        return isinstance(error, self._connection_errors())


class OpenAIVendor(Vendor):
    name = "openai"

    def _client(self, api_key, base_url, timeout):
        import openai
        return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def _connection_errors(self):
        import openai
        return (openai.APIConnectionError,)

    def ask(self, question: str, jpeg: bytes | None, temperature: float | None = None, max_tokens: int = 0) -> Reply:
        extra = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens or None)) if v is not None}
        content = question if jpeg is None else [   # text only: MM-Vet's grader ({"role": "user", "content": q})
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"}}]
        response = self.client.chat.completions.create(model=self.model, messages=[{"role": "user",
                                                                                    "content": content}], **extra)
        choice = response.choices[0]
        usage = response.usage
        return Reply(choice.message.content or "", str(choice.finish_reason),
                     usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)


class AnthropicVendor(Vendor):
    name = "anthropic"

    def _client(self, api_key, base_url, timeout):
        import anthropic
        return anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def _connection_errors(self):
        import anthropic
        return (anthropic.APIConnectionError,)

    def ask(self, question: str, jpeg: bytes | None, temperature: float | None = None, max_tokens: int = 0) -> Reply:
        extra = {} if temperature is None else {"temperature": temperature}
        image = [] if jpeg is None else [{"type": "image", "source": {
            "type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(jpeg).decode("utf-8")}}]
        response = self.client.messages.create(
            model=self.model, max_tokens=max_tokens or STUDY_MAX_TOKENS["anthropic"],
            messages=[{"role": "user", "content": image + [{"type": "text", "text": question}]}], **extra)
        text = "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
        return Reply(text, str(response.stop_reason), response.usage.input_tokens, response.usage.output_tokens)


class GoogleVendor(Vendor):
    name = "google"

    def _client(self, api_key, base_url, timeout):
        from google import genai
        from google.genai import types
        # attempts=1: no retries inside the SDK; `api_model` retries (with the rate limiter and logging).
        options = types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000),
                                    retry_options=types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=api_key, http_options=options)

    def _connection_errors(self):
        # google-genai sends through httpx (older releases) or httpx2 (newer): whichever is installed.
        import importlib
        errors = []
        for name in ("httpx", "httpx2"):
            try:
                errors.append(importlib.import_module(name).TransportError)
            except ImportError:
                pass
        return tuple(errors)

    def ask(self, question: str, jpeg: bytes | None, temperature: float | None = None, max_tokens: int = 0) -> Reply:
        from google.genai import types
        settings = {k: v for k, v in (("temperature", temperature), ("max_output_tokens", max_tokens or None))
                    if v is not None}
        response = self.client.models.generate_content(
            model=self.model, contents=[question] + ([] if jpeg is None else [
                types.Part.from_bytes(data=jpeg, mime_type="image/jpeg")]),
            config=types.GenerateContentConfig(**settings) if settings else None)
        candidates = response.candidates or []
        finish = str(candidates[0].finish_reason) if candidates else "NO_CANDIDATES"
        parts = (candidates[0].content.parts or []) if candidates and candidates[0].content else []
        usage = response.usage_metadata
        return Reply("".join(p.text for p in parts if p.text), finish,
                     (usage.prompt_token_count or 0) if usage else 0,
                     (usage.candidates_token_count or 0) if usage else 0)


VENDORS = {v.name: v for v in (OpenAIVendor, AnthropicVendor, GoogleVendor)}


def parse_checkpoint(checkpoint: str) -> tuple[str, str]:
    """"api:openai/gpt-4-turbo-2024-04-09" -> ("openai", "gpt-4-turbo-2024-04-09")."""
    body = checkpoint[len("api:"):] if checkpoint.startswith("api:") else ""
    vendor, _, model = body.partition("/")
    if vendor not in VENDORS or not model:
        raise ValueError(f"config.model.checkpoint={checkpoint!r}: an API model is 'api:VENDOR/MODEL' with VENDOR "
                         f"one of {sorted(VENDORS)} (e.g. api:openai/gpt-4-turbo-2024-04-09, "
                         "api:anthropic/claude-3-opus-20240229, api:google/gemini-1.0-pro-vision-001)")
    return vendor, model


def make_vendor(vendor: str, model: str, api_key: str, base_url: str = "", timeout: float = 120.0) -> Vendor:
    try:
        return VENDORS[vendor](model, api_key, base_url, timeout)
    except ImportError as e:
        raise ImportError(f"API models need the vendors' SDKs: pip install 'vlmcls_jax[api]' ({e})") from e
