"""Text generation on the device: a causal-LM bundle loads as a `Generator` (`edgeft.runtime.generate`)."""

from __future__ import annotations

import json


class CausalLM:
    name = "causal-lm"

    def open(self, folder, manifest: dict, threads: int | None, self_check: bool | str):
        """The loaded bundle: `generate(prompt, max_new_tokens=, temperature=, top_p=, stop=)` and `stream(...)`."""
        from edgeft.runtime.generate import open_generator

        return open_generator(folder, manifest, threads, self_check)

    def render(self, records: list[dict], as_json: bool) -> str:
        """JSON lines (prompt, text, tokens/s) for machines, or the generated texts for people."""
        if as_json:
            return "\n".join(json.dumps(record, ensure_ascii=False) for record in records)
        return "\n".join(record["text"] for record in records)


TASK = CausalLM()
