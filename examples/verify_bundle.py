#!/usr/bin/env python3
"""Verify a custody case bundle without custody.

Uses only public specifications and standard primitives: Python's hashlib
for SHA-256 and the `cryptography` package for Ed25519.

  - c2sp.org/signed-note: the checkpoint's signature under the verifier key
  - c2sp.org/tlog-checkpoint: origin, tree size, base64 root hash
  - c2sp.org/tlog-proof and RFC 9162 section 2.1.3.2: each entry's inclusion
  - the key chain: a rotation's new key is trusted only when the rotation is
    included in the checkpoint of size index + 1 signed by the key it retires
  - custody's per-case "prev" links: no entry of the case left out, at the
    start (the first has no prev), in between, or at the end (the bundle ends
    with the signed record of its export, which counts the entries before it)

Usage: verify_bundle.py BUNDLE_DIR [VERIFIER_KEY]
VERIFIER_KEY is the log's initial key, obtained from its operator; without
it the bundle's own verifier.key is used, which proves nothing about who
signed the bundle.
Exit status 0 when everything verifies, 1 otherwise.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def parse_vkey(vkey):
    # The base64 key may itself contain "+": split off the name and id only.
    name, key_id, key = vkey.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 0x01 or len(raw) != 33:
        raise ValueError("not an Ed25519 verifier key")
    # The key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    if expected != key_id:
        raise ValueError("verifier key id does not match the key")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note, vkey):
    """Returns (origin, size, root) of a checkpoint note signed by vkey."""
    name, key_id, public = parse_vkey(vkey)
    text, sep, sigs = note.partition(b"\n\n")
    if not sep:
        raise ValueError("no signature block")
    text += b"\n"
    signed = False
    for line in sigs.decode().splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line")
        sig_name, sig = line[2:].split(" ")
        blob = base64.b64decode(sig)
        if sig_name == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text)
            except InvalidSignature:
                raise ValueError("bad checkpoint signature")
            signed = True
    if not signed:
        raise ValueError("checkpoint not signed by the verifier key")
    lines = text.decode().split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != name:
        raise ValueError("checkpoint origin is not the key's name")
    return origin, size, root


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def parse_proof(data):
    head, _, checkpoint = data.partition(b"\n\n")
    lines = head.decode().split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise ValueError("not a tlog-proof")
    lines = lines[1:]
    if lines[0].startswith("extra "):
        lines = lines[1:]
    index = int(lines[0].removeprefix("index "))
    return index, [base64.b64decode(h) for h in lines[1:]], checkpoint


def key_for(chain, size):
    """The key in force for checkpoints of `size`: chain is [(first size, key)]."""
    return [k for first, k in chain if first <= size][-1]


def open_with_chain(note, chain):
    size = int(note.split(b"\n")[1])
    return open_checkpoint(note, key_for(chain, size))


def items(directory):
    if not os.path.isdir(directory):
        return []
    return sorted(int(f[:-5]) for f in os.listdir(directory) if f.endswith(".json"))


def main(bundle, vkey=None):
    if vkey is None:
        print("WARNING no verifier key given: using the bundle's own verifier.key")
        vkey = open(os.path.join(bundle, "verifier.key")).read().strip()
    problems = []
    case = open(os.path.join(bundle, "case")).read().strip()
    chain = [(0, vkey)]
    for i in items(os.path.join(bundle, "rotations")):
        entry = open(os.path.join(bundle, "rotations", f"{i}.json"), "rb").read()
        index, proof, cp = parse_proof(open(os.path.join(bundle, "rotations", f"{i}.tlog-proof"), "rb").read())
        current = chain[-1][1]
        _, size, root = open_checkpoint(cp, current)
        detail = json.loads(entry).get("detail") or {}
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        if (
            json.loads(entry).get("action") != "key_rotated"
            or detail.get("old_verifier_key") != current
            or index != i
            or size != i + 1
            or not verify_inclusion(i, size, leaf, proof, root)
        ):
            problems.append(f"key rotation at entry {i} is not covered by a checkpoint signed by the key it retires")
            continue
        chain.append((i + 2, detail["new_verifier_key"]))
    open_with_chain(open(os.path.join(bundle, "checkpoint"), "rb").read(), chain)
    indexes = items(os.path.join(bundle, "entries"))
    last, last_entry = None, None
    for i in indexes:
        entry = open(os.path.join(bundle, "entries", f"{i}.json"), "rb").read()
        index, proof, cp = parse_proof(open(os.path.join(bundle, "proofs", f"{i}.tlog-proof"), "rb").read())
        _, size, root = open_with_chain(cp, chain)
        leaf = hashlib.sha256(b"\x00" + entry).digest()
        if index != i or not verify_inclusion(i, size, leaf, proof, root):
            problems.append(f"entry {i} is not included in the signed log")
        parsed = json.loads(entry)
        if parsed.get("case") != case:
            problems.append(f"entry {i} is not of case {case}")
        if parsed.get("prev") != last:
            problems.append(f"entry {i}: prev is {parsed.get('prev')}, expected {last}: an entry is missing")
        last, last_entry = i, parsed
    counted = (last_entry or {}).get("detail", {}).get("entries") if (last_entry or {}).get("action") == "exported" else None
    if counted is None or counted != len(indexes) - 1:
        problems.append("the bundle does not end with its export record counting the entries before it")
    for p in problems:
        print("FAILED", p)
    print(f"{len(indexes)} entries checked, {'verified' if not problems else 'NOT verified'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:3]))
    except (ValueError, OSError, IndexError, KeyError) as e:
        import traceback

        traceback.print_exc(file=sys.stderr)
        print("FAILED", e)
        sys.exit(1)
