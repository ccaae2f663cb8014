"""greeter: an application's own interface served by a Python plugin (the example of an
interface file, `greeter.json` beside this file, judged with `tether-conformance --interface-file`).

`greeter.hello` answers a greeting for a name, in English unless `lang` says `fr`.
`greeter.announce` says the English greeting to the host's audience, a handle the host serves
(`audience.json` beside this file), and answers with the greeting and the audience's applause.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tether  # noqa: E402  (the SDK is one file in examples-python/)

GREETINGS = {"en": "Hello", "fr": "Bonjour"}


def hello(name: str, lang: str = "en") -> dict:
    word = GREETINGS.get(lang)
    if word is None:
        raise tether.Error(2001, f"unknown language: {lang}", {"lang": lang})
    return {"greeting": f"{word}, {name}!"}


def announce(name: str, audience: tether.RemoteHandle) -> dict:
    greeting = f"Hello, {name}!"
    heard = audience.hear(greeting=greeting)
    return {"greeting": greeting, "applause": heard["applause"]}


NAME = {"type": "string", "minLength": 1}
V1 = {
    "hello": ({"name": NAME, "lang?": {"type": "string", "enum": ["en", "fr"]}}, {"greeting": str}),
    "announce": ({"name": NAME, "audience": tether.handle("audience")}, {"greeting": str, "applause": int}),
}

if __name__ == "__main__":
    tether.serve("greeter-python", "0.1.0", tether.Interface("greeter", {1: V1}, globals()))
