#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the card traces, key references, URIs,
TLSA records and names the tests use (crates/card/src/applet/tests.rs, crates/provider/src/uri.rs,
crates/dane/src/tlsa.rs, tests/). Run from the repository root; the files are committed."""
import base64, os

def h(s):
    return bytes.fromhex(s.replace(" ", ""))

def framed(*answers):
    """Length-prefixed pieces, as the fuzz harness splits them (one length byte each)."""
    out = b""
    for a in answers:
        assert len(a) < 256
        out += bytes([len(a)]) + a
    return out

point = "04" + "".join(f"{i + 1:02X}" for i in range(32)) + "".join(f"{0x80 + i:02X}" for i in range(32))
rs = "".join(f"{0x40 + i:02X}" for i in range(64))
keygen = h(f"84033030318503303032 34454943 8641 {point}")
object_list = h("C10E7403444556840101 4B0113610101 C30E7302433183010220 0201F4210102")
paged_first = h("C10C840101740444455649 4B0113")
paged_second = h("C307 830102 2002012C")
app_info = h("1002 0100 1107 A0000005590010 B10104 B20104 B30104 B70101")
der_sig = h("3046 0221 00" + "C1" * 32 + " 0221 00" + "D2" * 32)

seeds = {
    "apdu_tlv": {
        "keygen": keygen + h("9000"),
        "object_list": object_list + h("9000"),
        "sig_long_length": h("330040" + rs),
        "sig_short_length": h("3340" + rs),
        "der_signature": der_sig,
        "chained_61xx": framed(h("6151"), keygen + h("9000")),
        "wrong_le_6cxx": framed(h("6C04"), h("0A0B0C0D9000")),
    },
    "applet_objects": {
        "object_list": object_list,
        "paged": paged_first + paged_second,
        "app_info": app_info,
        "file_object": h("830102 2002012C 210102"),
    },
    "applet_card": {},
    "modem_at": {
        "csim_ok": b'\r\n+CSIM: 4,"9000"\r\n\r\nOK\r\n',
        "csim_echo": b'AT+CSIM=10,"0070000001"\r\r\n+CSIM: 6,"019000"\r\n\r\nOK\r\n',
        "cme_error": b"\r\n+CME ERROR: 3\r\n",
        "error": b"\r\nERROR\r\n",
        "cgla_urc": b'AT+CGLA=1,10,"01CB000000"\r\r\n+CREG: 1\r\n\r\n+CGLA: 6,"019000"\r\n\r\nOK\r\n',
        "cgla_bad_length": b'\r\n+CGLA: 99999999999999999999,"9000"\r\n\r\nOK\r\n',
        "ccho_ok": b"\r\n+CCHO: 1\r\n\r\nOK\r\n",
        "ccho_bare_ids": b"\r\n2\r\n4294967296\r\nOK\r\n",
    },
    "keyref": {},
    "tlsa_rdata": {},
    "owner_name": {},
    "clientid_ext": {},
    "openssl_cnf": {
        "example": b"activate = 1\nreader = Virtual PCD\nkey-id = 01\ncert-id = 02\n",
        "labels": b"key-label = DEVICE\npub-label = DEVICE\ncert-label = cert\naid = A0000005590010,A000000030 53F124017701014953 41\ncla-style = 80\nchannel = basic\ndh-peer-id = 10\n",
        "modem": b"modem = /dev/ttyUSB2\ncla-style = 00\nchannel = logical\n",
    },
}

# A card session per operation: first byte picks it (see fuzzing::applet_card), then answers.
OPEN, SELECT = h("019000"), h("9000")
card = seeds["applet_card"]
card["select"] = bytes([0]) + framed(OPEN, SELECT)
card["info"] = bytes([1]) + framed(OPEN, SELECT, app_info + h("9000"))
card["objects_paged"] = bytes([2]) + framed(OPEN, SELECT, paged_first + h("6300"), paged_second + h("9000"))
card["object"] = bytes([3]) + framed(OPEN, SELECT, h("C10C840101740444455649 4B0113 9000"))
file = bytes(range(256)) + bytes(range(44))
card["read_file"] = bytes([4]) + framed(OPEN, SELECT, h("7304636572742002012C9000"), file[:200] + h("9000"), file[200:] + h("9000"))
card["public_key"] = bytes([5]) + framed(OPEN, SELECT, h(f"34454943 8641 {point} 9000"))
card["sign_digest"] = bytes([0x86]) + framed(OPEN, SELECT, h("9000"), h("6143"), h(f"330040{rs}9000"))
card["sign_message"] = bytes([7]) + framed(OPEN, SELECT, h("9000"), h("9000"), h(f"3340{rs}9000"))
card["verify"] = bytes([8]) + framed(OPEN, SELECT, h("9000"), h("6D01"))
card["compute_dh"] = bytes([9]) + framed(OPEN, SELECT, h("9000"), h("9000"), h("11" * 32 + "9000"))
card["random"] = bytes([0x1A]) + framed(h("6881"), SELECT, h("0A0B0C0D" * 9 + "0A9000"))
card["keygen"] = bytes([0x8B]) + framed(OPEN, SELECT, h("6151"), keygen[:50], keygen[50:] + h("9000"))

def der_tlv(tag, value):
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + value

def keyref_der(uri):
    return der_tlv(0x30, der_tlv(0x0C, b"IoT SAFE applet key") + der_tlv(0x0C, uri.encode()))

def keyref_pem(uri):
    b64 = base64.b64encode(keyref_der(uri)).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN IOTSAFE KEY REFERENCE-----\n" + "\n".join(lines) + "\n-----END IOTSAFE KEY REFERENCE-----\n").encode()

uris = {
    "ids": "iotsafe:key-id=01;cert-id=02",
    "labels": "iotsafe:reader=Virtual%20PCD;key-label=DEVICE;cert-id=02;type=private",
    "aid_style": "iotsafe:aid=A0000005590010;cla-style=80;channel=basic;pub-id=3031;type=public",
    "modem": "iotsafe:modem=/dev/ttyUSB2;cert-label=cert;type=cert",
}
for name, uri in uris.items():
    seeds["keyref"][f"uri_{name}"] = uri.encode()
    seeds["keyref"][f"pem_{name}"] = keyref_pem(uri)
seeds["keyref"]["der_ids"] = keyref_der(uris["ids"])

sha256 = "ab" * 32
tl = seeds["tlsa_rdata"]
tl["wire_3_1_1"] = framed(h("030101" + sha256))
tl["wire_agility"] = framed(h("030101" + sha256), h("030102" + "cd" * 64), h("020001" + sha256), h("030100" + "0102030405"))
tl["wire_unusable"] = framed(h("040101" + sha256), h("03010102030405"))
tl["presentation"] = b"3 1 1 " + sha256.encode()
tl["zone_line"] = b"_8883._tcp.broker.example. 300 IN TLSA 3 1 1 " + sha256.encode()
tl["generic_form"] = b"_443._tcp.h. IN TYPE52 \\# 5 030101abcd"
tl["multiline"] = b"sensor7._device.example.test. 300 IN TLSA ( 3 1 1\n " + sha256.encode() + b" )"

names = {
    "device": ("sensor7._device.example.test", "example.test"),
    "service": ("_mqtt-client.device1.example.test", "example.test"),
    "plain": ("device1.example.test.", "example.test."),
    "escaped_dot": ("x._device.foo\\.example.test", "example.test"),
    "outside": ("sensor7._device.example.org", "example.test"),
}
for name, (n, d) in names.items():
    seeds["owner_name"][name] = framed(n.encode(), d.encode())

for name, (n, _) in names.items():
    seeds["clientid_ext"][name] = framed(n.encode())
seeds["clientid_ext"]["trailing_dot_upper"] = framed(b"Sensor7._DEVICE.Example.Test.")

# TSIG key files as BIND's tsig-keygen / ddns-confgen -q and knot's keymgr -t write them, the
# inline form, and a few an operator gets wrong (the secret where the algorithm goes).
secret = base64.b64encode(bytes(range(32))).decode()
seeds["tsig_key_file"] = {
    "bind": f'key "registry-key" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'.encode(),
    "knot": f"# hmac-sha256:registry-key:{secret}\nkey:\n  - id: registry-key\n    algorithm: hmac-sha256\n    secret: {secret}\n".encode(),
    "inline": f"registry-key:hmac-sha512:{secret}".encode(),
    "secret_as_algorithm": f'key "k" {{ algorithm {secret}; secret "{secret}"; }};'.encode(),
    "two_keys": f'key "a" {{ algorithm hmac-sha256; secret "{secret}"; }};\nkey "b" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'.encode(),
    "comments": f'# c\n// c\n/* c */ key "k" {{ algorithm hmac-sha384; secret "{secret}"; }};\n'.encode(),
}

for target, files in seeds.items():
    directory = os.path.join("fuzz", "corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
