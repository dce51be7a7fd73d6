#!/usr/bin/env bash
# Rebuilds the real-swing evaluation set from its manifest (real-swings.csv
# beside this script): each clip is downloaded from its public GitHub
# repository at the pinned commit and checked against its sha256. The clips
# stay out of this repository (their licences are their owners'); they go to
#   ${GOLFTRACKER_CACHE:-~/.cache/golftracker}/real-swings/   with labels.csv,
# which `cargo xtask eval-swings DIR` reads. Needs the internet (not CI).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${GOLFTRACKER_CACHE:-$HOME/.cache/golftracker}/real-swings
mkdir -p "$out"
cp "$here/real-swings.csv" "$out/labels.csv"
python3 - "$here/real-swings.csv" "$out" <<'PY'
import csv, hashlib, os, sys, urllib.parse, urllib.request
manifest, out = sys.argv[1], sys.argv[2]
for row in csv.DictReader(open(manifest)):
    dest = os.path.join(out, row["file"])
    if os.path.exists(dest) and hashlib.sha256(open(dest, "rb").read()).hexdigest() == row["sha256"]:
        continue
    path, _, rest = row["source_path"].partition(" @")
    commit = rest.split()[0]
    url = f"https://github.com/{row['source_repo']}/raw/{commit}/{urllib.parse.quote(path)}"
    data = urllib.request.urlopen(url, timeout=60).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != row["sha256"]:
        sys.exit(f"{row['file']}: sha256 {digest} is not the manifest's {row['sha256']} ({url})")
    open(dest, "wb").write(data)
    print(f"fetched {row['file']}")
PY
echo "real swings ready in $out: cargo xtask eval-swings $out [--split tune|report]"
