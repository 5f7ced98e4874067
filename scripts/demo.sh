#!/usr/bin/env bash
# End-to-end demo on a simulated eSIM: an isolated pcscd with the vpcd reader driver, the
# IoT SAFE applet simulator plugged into it, and the `iotsafe` tool using the card; `openssl`
# checks the card's signature.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${IOTSAFE_BIN_DIR:-$top/target/debug}
work=$(mktemp -d /tmp/iotsafe-demo.XXXXXX)
port=${IOTSAFE_DEMO_PORT:-36963}
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "Starting pcscd (private instance, vpcd reader on port $port)"
mkdir -p "$work/reader.conf.d" /run/pcscd
printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x%04X\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x%04X\n' \
    "$port" "$port" > "$work/reader.conf.d/vpcd"
unshare -m sh -c 'mount -t tmpfs none /run/pcscd && exec pcscd -f -c "$0"' "$work/reader.conf.d" \
    > "$work/pcscd.log" 2>&1 &
pids+=($!)
export PCSCLITE_CSOCK_NAME=/proc/$!/root/run/pcscd/pcscd.comm
for _ in $(seq 100); do [[ -S $PCSCLITE_CSOCK_NAME ]] && break; sleep 0.1; done

step "Plugging in the simulated eSIM (new P-256 key and certificate on the applet)"
"$bin/iotsafe-sim" --vpcd "127.0.0.1:$port" --state "$work/esim.json" --provision \
    --trace "$work/apdu.trace" > "$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/iotsafe" readers 2>/dev/null | grep -q 'card present' && break; sleep 0.1; done

step "iotsafe readers";  "$bin/iotsafe" readers
step "iotsafe info";     "$bin/iotsafe" info
step "iotsafe objects";  "$bin/iotsafe" objects
step "iotsafe pubkey";   "$bin/iotsafe" pubkey --out "$work/device.pub.pem"; cat "$work/device.pub.pem"
step "iotsafe cert";     "$bin/iotsafe" cert --out "$work/device.pem"
openssl x509 -in "$work/device.pem" -noout -subject -dates

step "Signing a digest on the card"
echo "temperature=21.5" > "$work/message.txt"
digest=$(openssl dgst -sha256 -r "$work/message.txt" | cut -d' ' -f1)
echo "sha256(message) = $digest"
"$bin/iotsafe" sign --digest "$digest" --hash sha256 --out "$work/sig.der"
openssl asn1parse -inform DER -in "$work/sig.der"

step "Verifying the card's signature with openssl"
openssl dgst -sha256 -verify "$work/device.pub.pem" -signature "$work/sig.der" "$work/message.txt"

step "TLSA record for the device (DANE-EE, SPKI, SHA-256)"
"$bin/iotsafe" tlsa --name sensor7._device.iotregistry.test

step "APDUs the card saw: $(wc -l < "$work/apdu.trace")"
echo
echo "demo: OK"
