"""A greeter plugin broken on purpose, for the judge's tests of `--interface-file`: the good one
is examples-python/greeter/greeter.py; `--break FLAG` breaks one thing.

- `narrow-params`: declares `lang` as `en` only, where the interface file also allows `fr`;
- `version`: speaks greeter version 2 only, which the interface file does not define;
- `missing`: serves `hi` instead of `hello`;
- `french`: greets in French without the comma and the `!` (`Bonjour Ada`), which the
  scenarios that speak French catch (examples-python/greeter/scenarios/);
- `result`: answers `{"greeting": {"text": ...}}`, an object where the interface file says a
  string, which `iface.greeter.messages-valid` catches;
- `invoke`: `greeter.announce` invokes the host's `audience.hear` with `{"text": ...}` where
  audience.json says `{"greeting": ...}`, which `iface.audience.messages-valid` catches.
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
sys.path.insert(0, os.path.join(ROOT, "examples-python"))
import tether  # noqa: E402

BREAK = sys.argv[sys.argv.index("--break") + 1] if "--break" in sys.argv else ""


def hello(name: str, lang: str = "en") -> dict:
    word = {"en": "Hello", "fr": "Bonjour"}.get(lang)
    if word is None:
        raise tether.Error(2001, f"unknown language: {lang}", {"lang": lang})
    if BREAK == "french" and lang == "fr":
        return {"greeting": f"{word} {name}"}
    if BREAK == "result":
        return {"greeting": {"text": f"{word}, {name}!"}}
    return {"greeting": f"{word}, {name}!"}


def announce(name: str, audience: tether.RemoteHandle) -> dict:
    greeting = f"Hello, {name}!"
    heard = audience.hear(text=greeting) if BREAK == "invoke" else audience.hear(greeting=greeting)
    return {"greeting": greeting, "applause": heard["applause"]}


hi = hello
NAME = {"type": "string", "minLength": 1}
LANGS = ["en"] if BREAK == "narrow-params" else ["en", "fr"]
PARAMS = {"name": NAME, "lang?": {"type": "string", "enum": LANGS}}
METHODS = {
    ("hi" if BREAK == "missing" else "hello"): (PARAMS, {"greeting": str}),
    "announce": ({"name": NAME, "audience": tether.handle("audience")}, {"greeting": str, "applause": int}),
}
VERSION = 2 if BREAK == "version" else 1

if __name__ == "__main__":
    tether.serve("greeter-broken", "0.1.0", tether.Interface("greeter", {VERSION: METHODS}, globals()))
