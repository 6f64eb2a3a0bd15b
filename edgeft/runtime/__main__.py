"""`python -m edgeft.runtime [predict] BUNDLE TEXT...`, `... generate BUNDLE PROMPT` and `... bench BUNDLE` on a device.

argparse, not click: this entry point must work with the light runtime's dependencies and import nothing else.
"""

from __future__ import annotations

import argparse
import sys

from edgeft.errors import EdgeftError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from edgeft.runtime.bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["bench-generate"]:
        from edgeft.runtime.generate_bench import main as bench_generate_main

        return bench_generate_main(argv[1:])
    if argv[:1] == ["generate"]:
        return _generate(argv[1:])
    if argv[:1] == ["predict"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="python -m edgeft.runtime", description="Run a bundle on texts.")
    parser.add_argument("bundle", help="bundle folder (with manifest.json)")
    parser.add_argument("texts", nargs="+", help='texts to classify; "-" reads one per line from stdin')
    parser.add_argument("--json", action="store_true", help="one JSON object per text")
    parser.add_argument("--top-k", type=int, default=1, help="also show the next labels")
    parser.add_argument("--threads", type=int, default=None, help="backend threads (default: its own choice)")
    parser.add_argument("--no-self-check", action="store_true", help="skip the load-time self-check (warn only)")
    args = parser.parse_args(argv)

    from edgeft.runtime.predict import predict_texts

    try:
        output = predict_texts(
            args.bundle, args.texts, args.threads, args.top_k, "warn" if args.no_self_check else True, args.json
        )
    except EdgeftError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return error.exit_code
    print(output)
    return 0


def _generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeft.runtime generate",
                                     description="Generate text with a causal-LM bundle, streaming it.")
    parser.add_argument("bundle", help="bundle folder (with manifest.json)")
    parser.add_argument("prompt", help="the prompt (put into the bundle's prompt format unless --raw)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--stop", action="append", default=[], help="stop before this text (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--raw", action="store_true", help="send the prompt as is")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from edgeft.runtime.generate import generate_to

    try:
        generate_to(lambda piece: print(piece, end="", flush=True), args.bundle, args.prompt, args.max_new_tokens,
                    args.temperature, args.top_p, args.stop, args.seed, args.raw, args.threads)
    except EdgeftError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return error.exit_code
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
