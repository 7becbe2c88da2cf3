#!/usr/bin/env bash
# make-fixture.sh [NAME] — make an upgrade fixture: a small data directory
# written by `coffer serve` built from the work tree's HEAD, packed as
# NAME.tar.gz beside this script, with NAME.json recording what it holds
# (names, recovery points and the SHA-256 of the disk at each one, the
# principal and its API token, a live read grant) for TestUpgrade.
#
# Run it once per release, from a clean checkout of the release commit:
#   internal/e2e/testdata/upgrade/make-fixture.sh
# NAME defaults to <commit date>-<short commit>. Needs go, curl, jq, python3,
# qemu-io (qemu-utils) and sha256sum.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
commit=$(git -C "$root" rev-parse HEAD)
name=${1:-$(git -C "$root" log -1 --format=%cd --date=format:%Y%m%d)-$(git -C "$root" rev-parse --short=7 HEAD)}
if [ -n "$(git -C "$root" status --porcelain -- cmd internal ':!internal/e2e/testdata')" ]; then
  echo "make-fixture: the work tree has changes; a fixture must be made by a committed release" >&2
  exit 1
fi

work=$(mktemp -d)
server=
cleanup() {
  rc=$?
  [ $rc -eq 0 ] || cat "$work/log" >&2 2>/dev/null || true
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/coffer" ./cmd/coffer)
coffer() { "$work/coffer" "$@" 2>>"$work/log"; }
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

data=$work/data
export COFFER_DATA=$data COFFER_CONFIG=$work/no-profile.json
http=$(freeport) nbdport=$(freeport)
"$work/coffer" serve --data "$data" --listen "127.0.0.1:$http" --nbd-listen "127.0.0.1:$nbdport" --log-level warn 2>>"$work/log" &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done

rg=rg-fixture snaprg=rg-fixture-snapshots
coffer group create -n $rg -l local >/dev/null
coffer group create -n $snaprg -l local >/dev/null

# A 16 MiB disk: patterned and random blocks among holes.
img=$work/image1
/usr/bin/python3 - "$img" <<'PY'
import os, sys
blk = 64 << 10
with open(sys.argv[1], "wb") as f:
    f.truncate(16 << 20)
    for i in range(0, 256, 3):          # every third block: text naming it
        f.seek(i * blk)
        line = b"coffer upgrade fixture block %04d\n" % i
        f.write((line * (blk // len(line) + 1))[:blk])
    for i in (5, 77, 200):              # three blocks that do not compress
        f.seek(i * blk)
        f.write(os.urandom(blk))
PY
coffer disk upload -g $rg -n data1 "$img" >/dev/null
sha() { coffer disk download -g $rg -n "$1" "$work/$1.img" >/dev/null && sha256sum "$work/$1.img" | cut -d' ' -f1; }
hash1=$(sha data1)

coffer vault create -g $rg -n vault1 >/dev/null
coffer policy create -g $rg -v vault1 -n daily --retention 30d >/dev/null
coffer protect -g $rg -v vault1 -n bi-data1 --disk-group $rg --disk-name data1 --policy daily \
  --snapshot-group $snaprg --grant-missing-roles >/dev/null
coffer backup now -g $rg -v vault1 -n bi-data1 >/dev/null

# Change the disk over NBD (new data, an overwrite, zeroes over data), back up again.
url=$(coffer disk nbd-url -g $rg -n data1 --access write)
qemu-io -f raw -c 'write -P 0xc5 1M 512k' -c 'write -P 0x3a 0 64k' -c 'write -z 3M 192k' "$url" >/dev/null
coffer disk revoke-access -g $rg -n data1 >/dev/null
hash2=$(sha data1)
coffer backup now -g $rg -v vault1 -n bi-data1 >/dev/null

rps=$(coffer rp list -g $rg -v vault1 --instance bi-data1 -o json)
rp1=$(jq -r 'sort_by(.properties.recoveryPointTime) | .[0].name' <<<"$rps")
rp2=$(jq -r 'sort_by(.properties.recoveryPointTime) | .[1].name' <<<"$rps")
vaultid=$(coffer vault show -g $rg -n vault1 -o json | jq -r .identity.principalId)
coffer role assignment create --assignee "$vaultid" --role "Disk Restore Operator" -g $rg >/dev/null
coffer restore -g $rg -v vault1 --instance bi-data1 --rp "$rp1" --name restored1 --target-group $rg >/dev/null
[ "$(sha restored1)" = "$hash1" ] || { echo "make-fixture: restored1 differs from data1 at $rp1" >&2; exit 1; }

# A service principal with Reader on the group, and an API token of its own.
sp=$(coffer principal create --display-name fixture-operator -o json)
spid=$(jq -r .principalId <<<"$sp") spclient=$(jq -r .clientId <<<"$sp") spsecret=$(jq -r .clientSecret <<<"$sp")
tenant=$(jq -r .tenantId "$data/admin.json") sub=$(jq -r .subscriptionId "$data/admin.json")
coffer role assignment create --assignee "$spid" --role Reader -g $rg >/dev/null
COFFER_CONFIG=$work/operator.json coffer login --endpoint "http://127.0.0.1:$http" -u "$spclient" -p "$spsecret" \
  --tenant "$tenant" --subscription "$sub" --days 90
optoken=$(jq -r .token "$work/operator.json")

# A read grant on the restored disk that outlives the fixture's making.
sas=$(coffer disk grant-access -g $rg -n restored1 --access read --duration-in-seconds 2592000 -o json | jq -r .accessSAS)

verify=$(coffer admin verify -o json)
[ "$(jq -r .ok <<<"$verify")" = true ] || { echo "make-fixture: verify is not clean: $verify" >&2; exit 1; }

made=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kill -TERM "$server"; wait "$server" || true; server=

jq -n --arg commit "$commit" --arg made "$made" --arg rg $rg --arg rp1 "$rp1" --arg rp2 "$rp2" \
  --arg hash1 "$hash1" --arg hash2 "$hash2" --arg spid "$spid" --arg spclient "$spclient" --arg spsecret "$spsecret" \
  --arg optoken "$optoken" --arg sas "$sas" --argjson size $((16 << 20)) '{
  commit: $commit, madeAt: $made, madeBy: "internal/e2e/testdata/upgrade/make-fixture.sh",
  resourceGroup: $rg, snapshotResourceGroup: "rg-fixture-snapshots", vault: "vault1", policy: "daily", instance: "bi-data1",
  disks: {data1: {sizeBytes: $size, sha256: $hash2}, restored1: {sizeBytes: $size, sha256: $hash1}},
  recoveryPoints: [{name: $rp1, sha256: $hash1}, {name: $rp2, sha256: $hash2}],
  principal: {principalId: $spid, clientId: $spclient, clientSecret: $spsecret, role: "Reader", apiToken: $optoken},
  grant: {disk: "restored1", access: "Read", accessSAS: $sas}
}' >"$here/$name.json"
tar --sparse --owner=0 --group=0 --numeric-owner -czf "$here/$name.tar.gz" -C "$work" data
echo "made $here/$name.tar.gz ($(du -h "$here/$name.tar.gz" | cut -f1)) and $name.json from $commit"
