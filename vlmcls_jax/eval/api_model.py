"""Proprietary VLMs (GPT-4, Claude 3, Gemini) as one more model family of the eval and ImageWikiQA jobs:
`config.model.checkpoint = "api:openai/gpt-4-turbo-2024-04-09"` (or api:anthropic/..., api:google/...).

`load_api` returns what `eval.loading.load_for_eval` returns for a local checkpoint: the model is an
`ApiModel` (its `answer(prompts, image_paths)` is what `vlm_generation.answer_batch` calls instead of
decoding) and the inputs an `ApiInputs` (the prompt is the bare question, as the study sent it; a
chain-of-thought sentence is appended to it: `imagewikiqa/main_api.py`'s `f"{item['text']} Let's think step
by step."`).  Requests and images are built in `api_vendors` (the study's settings).

Cost control:
- Every reply is appended to WORKDIR/api_responses.jsonl the moment it arrives (one line, flushed), keyed by
  a hash of (vendor, model, temperature, max tokens, prompt, image bytes).  A request whose key is in the file
  is never sent again: a crash loses nothing, a rerun (or a repeated request) pays for nothing twice.
- A requests-per-minute and tokens-per-minute limiter (`rate_limit`) shared by the `concurrency` threads.
- 408 / 409 / 429 / 5xx replies and dropped connections are retried with exponential backoff (or the
  server's Retry-After), each retry printed with the image and question it is for; after `max_retries` the
  job stops with an error naming them (replies already received stay in the file).  Other errors (400,
  401, ...) stop the job at once.
- `usage()`: requests, input / output tokens and cost (USD, `api_vendors.PRICES` or the config's prices) of
  every reply in the file, and what this run sent; the jobs put it in results.json as `api_usage`.
The key is read from the environment (`api_vendors.KEY_ENV`, or `key_env`), given to the SDK, and never
stored, printed or written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from vlmcls_jax.data.prompts import CHAIN_OF_THOUGHT
from vlmcls_jax.eval.api_vendors import (
    KEY_ENV,
    PRICES,
    STUDY_MAX_TOKENS,
    encode_image,
    error_status,
    make_vendor,
    parse_checkpoint,
    retry_after,
    scrub,
)
from vlmcls_jax.eval.rate_limit import RateLimiter
from vlmcls_jax.eval.vlm_inputs import VLMInputs
from vlmcls_jax.fileio import append_jsonl, read_jsonl_by_id


@dataclasses.dataclass(frozen=True)
class ApiOptions:
    """config.model.api (defaults.api_config).  None / 0 for temperature / max_tokens: the study's settings."""
    temperature: float | None = None
    max_tokens: int = 0
    max_image_side: int = 0             # > 0: resize larger images to this longer side (the study did not)
    requests_per_minute: int = 0        # 0: no limit
    tokens_per_minute: int = 0          # 0: no limit
    tokens_per_request: int = 1500      # the limiter's estimate for a request until replies give the real mean
    concurrency: int = 16               # threads sending requests (the study's --threads 16)
    max_retries: int = 6
    backoff_seconds: float = 2.0        # the first retry's wait; doubled each time (with jitter), capped below
    max_backoff_seconds: float = 120.0
    timeout_seconds: float = 120.0
    base_url: str = ""                  # "" = the vendor's endpoint
    key_env: str = ""                   # "" = api_vendors.KEY_ENV[vendor]
    price_input: float | None = None    # USD per million tokens; None = api_vendors.PRICES
    price_output: float | None = None


class ApiRequestError(RuntimeError):
    """A request that failed for good; names the image and question."""


class ApiModel:
    """A vendor's model behind its API.  answer(prompts, image_paths) -> texts, one per prompt, in order."""

    is_api_model = True

    def __init__(self, checkpoint: str, options: ApiOptions, log_path: str, *, environ=os.environ,
                 sleep=time.sleep, clock=time.monotonic):
        self.vendor_name, self.model_name = parse_checkpoint(checkpoint)
        self.checkpoint, self.options, self.log_path, self.sleep = checkpoint, options, log_path, sleep
        self.key_env = options.key_env or KEY_ENV[self.vendor_name]
        key = environ.get(self.key_env)
        if not key:
            raise ValueError(f"{checkpoint}: set the environment variable {self.key_env} to the API key "
                             "(keys are read from the environment only)")
        self._key = key
        self.vendor = make_vendor(self.vendor_name, self.model_name, key, options.base_url, options.timeout_seconds)
        self.limiter = RateLimiter(options.requests_per_minute, options.tokens_per_minute, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._rng = random.Random(0)   # backoff jitter
        self.sent = self.retries = self.reused = 0
        self.replies = read_jsonl_by_id(log_path)   # a torn last line is dropped
        self._tokens = sum(r["input_tokens"] + r["output_tokens"] for r in self.replies.values())

    # -- the study's settings, as sent -------------------------------------------------------------------------
    @property
    def max_tokens(self) -> int:
        return self.options.max_tokens or STUDY_MAX_TOKENS[self.vendor_name]

    def settings(self) -> dict:
        """What results.json records about how the model was asked."""
        return {"vendor": self.vendor_name, "model": self.model_name,
                "temperature": self.options.temperature, "max_tokens": self.max_tokens or None,
                "max_image_side": self.options.max_image_side or None, "key_env": self.key_env,
                "responses": self.log_path}

    def request_key(self, prompt: str, jpeg: bytes | None, temperature: float | None) -> str:
        what = json.dumps([self.vendor_name, self.model_name, temperature, self.max_tokens, prompt,
                           None if jpeg is None else hashlib.sha256(jpeg).hexdigest()])
        return hashlib.sha256(what.encode()).hexdigest()

    # -- answering ---------------------------------------------------------------------------------------------
    def answer(self, prompts: Sequence[str], images: Sequence[str | None],
               temperature: float | None = None) -> list[str]:
        """The reply text to each (prompt, image file or None for the prompt alone); replies already in the log
        are not requested again, and a request repeated within the call is sent once.  temperature: this call's
        (None: the options')."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        temperature = self.options.temperature if temperature is None else temperature
        jpegs = {path: None if path is None else encode_image(path, self.options.max_image_side)
                 for path in dict.fromkeys(images)}
        keys = [self.request_key(p, jpegs[i], temperature) for p, i in zip(prompts, images)]
        todo = {k: (p, i) for k, p, i in zip(keys, prompts, images) if k not in self.replies}
        self.reused += len(set(keys)) - len(todo)
        if todo:
            with ThreadPoolExecutor(max(1, min(self.options.concurrency, len(todo)))) as pool:
                futures = [pool.submit(self._request, k, p, i, jpegs[i], temperature) for k, (p, i) in todo.items()]
                errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:   # every other reply of the batch is already in the log
                raise errors[0]
        return [self.replies[k]["output"] for k in keys]

    def _estimate(self) -> float:
        """The limiter's guess for the next request: the mean tokens of the replies so far."""
        with self._lock:
            n, total = len(self.replies), self._tokens
        return total / n if n else self.options.tokens_per_request

    def _request(self, key: str, prompt: str, image: str | None, jpeg: bytes | None, temperature) -> None:
        o, what = self.options, f"image {image} (question {prompt[:80]!r})"
        for attempt in range(o.max_retries + 1):
            ticket = self.limiter.acquire(self._estimate())
            start = time.time()
            try:
                reply = self.vendor.ask(prompt, jpeg, temperature, o.max_tokens)
            except Exception as e:  # noqa: BLE001  (classified below; anything else is re-raised)
                self.limiter.settle(ticket, 0)
                status = error_status(e)
                reason = scrub(f"{type(e).__name__}" + (f" {status}" if status else "") + f": {e}", self._key)
                if not self.vendor.is_transient(e):
                    raise ApiRequestError(f"{self.checkpoint}: request for {what} failed: {reason}") from e
                if attempt == o.max_retries:
                    raise ApiRequestError(f"{self.checkpoint}: request for {what} failed {attempt + 1} times; "
                                          f"last: {reason}") from None
                wait = retry_after(e)   # the server's Retry-After, else exponential backoff with jitter; capped
                if wait is None:
                    wait = o.backoff_seconds * 2 ** attempt * (0.5 + self._rng.random() / 2)
                wait = min(wait, o.max_backoff_seconds)
                with self._lock:
                    self.retries += 1
                print(f"{self.checkpoint}: {reason[:300]} for {what}; retry {attempt + 1} of {o.max_retries} "
                      f"in {wait:.1f}s", flush=True)
                self.sleep(wait)
                continue
            self.limiter.settle(ticket, reply.input_tokens + reply.output_tokens)
            record = {"id": key, "image": image, "prompt": prompt, "model": self.model_name,
                      "temperature": temperature, "output": reply.text,
                      "finish_reason": reply.finish_reason, "input_tokens": reply.input_tokens,
                      "output_tokens": reply.output_tokens, "attempts": attempt + 1,
                      "seconds": round(time.time() - start, 3)}
            with self._lock:
                append_jsonl(self.log_path, [record], fsync=True)
                self.replies[key] = record
                self.sent += 1
                self._tokens += reply.input_tokens + reply.output_tokens
            return

    # -- accounting --------------------------------------------------------------------------------------------
    def prices(self) -> tuple[float, float] | None:
        o = self.options
        if o.price_input is not None and o.price_output is not None:
            return float(o.price_input), float(o.price_output)
        return PRICES.get(self.model_name)

    def usage(self) -> dict:
        """Tokens and cost of every reply in the log (all runs of this workdir), and what this run did."""
        records = list(self.replies.values())
        tokens_in = sum(r["input_tokens"] for r in records)
        tokens_out = sum(r["output_tokens"] for r in records)
        prices = self.prices()
        cost = None if prices is None else round((tokens_in * prices[0] + tokens_out * prices[1]) / 1e6, 6)
        return {"requests": len(records), "input_tokens": tokens_in, "output_tokens": tokens_out,
                "empty_replies": sum(not r["output"] for r in records),
                "cost_usd": cost,
                "usd_per_million_tokens": None if prices is None else {"input": prices[0], "output": prices[1]},
                "this_run": {"sent": self.sent, "reused_from_log": self.reused, "retries": self.retries},
                "settings": self.settings()}


@dataclasses.dataclass(frozen=True)
class ApiInputs(VLMInputs):
    """The API family's prompt: the question itself (no conversation template: the vendor applies its own), with
    an assistant prefix (chain of thought) appended to it as the study did.  Nothing is tokenized here."""
    prompt_format: str = "api"

    def __post_init__(self):
        pass

    @property
    def family(self) -> str:
        return "api"

    @property
    def scoring_prefix(self) -> str:
        raise ValueError(f"{self.model.checkpoint}: probabilistic inference scores every class name by the model's "
                         "token probabilities, which the vendors' APIs do not give; drop 'scoring' from "
                         "config.experiments")

    def prompt(self, question: str, assistant_prefix: str = "", chain_of_thought: bool = False) -> str:
        """The question, then "Let's think step by step." with chain of thought (imagewikiqa/main_api.py
        appends it to the question), then the assistant prefix."""
        parts = [question] + ([CHAIN_OF_THOUGHT] if chain_of_thought else []) + (
            [assistant_prefix] if assistant_prefix else [])
        return " ".join(parts)

    def prediction(self, prompt: str, generated: str) -> str:
        """The reply is the prediction: the vendor's answer holds no prompt to cut (main_api.py scores `output`)."""
        return generated

    def encode(self, tokenizer, prompts, images, *, pad_to_square=False):
        raise TypeError("an API model is sent prompts and image files (ApiModel.answer), not token ids")


def load_api(checkpoint: str, options: dict | None = None, log_path: str = "api_responses.jsonl", **kwargs):
    """(ApiModel, ApiInputs) for an "api:VENDOR/MODEL" checkpoint; `options`: config.model.api as a dict."""
    options = ApiOptions(**{k: v for k, v in (options or {}).items()})
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    model = ApiModel(checkpoint, options, log_path, **kwargs)
    return model, ApiInputs(model, None)


def api_usage(model) -> dict | None:
    """results.json's `api_usage` for an API model, None for a local one."""
    return model.usage() if getattr(model, "is_api_model", False) else None


def api_arguments(model_config, workdir: str) -> dict:
    """`load_for_eval(api=...)` from a job's (resolved) config.model: its `api` section and where the replies go
    (WORKDIR/api_responses.jsonl; one part file per process when several share the job)."""
    import jax

    from vlmcls_jax.eval.shards import part_path
    log = part_path(os.path.join(workdir, "api_responses.jsonl"), jax.process_index(), jax.process_count())
    return {"options": dict(model_config.api), "log_path": log}


