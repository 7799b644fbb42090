#!/usr/bin/env bash
# An alert in, an isolated instance and its acquired disk out, in one go, on
# the emulators (moto in server mode; nothing leaves 127.0.0.1):
#
#   1. starts the emulators (unless CUSTODY_TEST_S3_ENDPOINT names a running moto)
#   2. seeds an EC2 instance whose only volume holds a small ext4 file system
#   3. starts `custody serve` with a playbook and posts a signed GuardDuty finding
#   4. shows the job, the instance isolated, the disk in the evidence store,
#      processed in place (its auth.log's login on the case's timeline, next
#      to the alert), the case verifying, and a file read back from the image
#
# Memory is left out by the playbook: moto never runs SSM commands (see the
# docs/testing.md, what the emulators cannot do). Uses CUSTODY_BIN when set, else builds custody.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/emulators.sh
source "$ROOT/scripts/emulators.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custody-target}"
PY="$ROOT/.venv/bin/python"
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  stop_emulators
  rm -rf "$WORK"
}
step() { printf '\n== %s\n' "$*"; }

install_emulators
if [ -z "${CUSTODY_TEST_S3_ENDPOINT:-}" ]; then
  start_emulators
fi
trap cleanup EXIT
if ! command -v mkfs.ext4 >/dev/null || ! command -v debugfs >/dev/null; then
  echo "serve-end-to-end: needs e2fsprogs (mkfs.ext4, debugfs)" >&2
  exit 2
fi
if [ -z "${CUSTODY_BIN:-}" ]; then
  cargo build --locked --quiet --manifest-path "$ROOT/Cargo.toml"
  CUSTODY_BIN="$CARGO_TARGET_DIR/debug/custody"
fi

# Emulator credentials only; the region matches the GuardDuty sample's.
export AWS_ENDPOINT_URL="$CUSTODY_TEST_S3_ENDPOINT" AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 \
  AWS_EC2_METADATA_DISABLED=true CUSTODY_HOME="$WORK/home"
unset AWS_PROFILE AWS_SESSION_TOKEN
custody() { "$CUSTODY_BIN" --no-progress "$@"; }

step "1. An instance whose disk holds a file system with a file on it"
mkdir -p "$WORK/root/var/log"
echo "the attacker was here" >"$WORK/root/evidence.txt"
# The login that the brute force ended with, as sshd logged it.
echo "$(date -u -d '-10 min' '+%b %e %H:%M:%S') web-1 sshd[4242]: Accepted password for root from 198.51.100.23 port 50022 ssh2" >"$WORK/root/var/log/auth.log"
truncate -s 1G "$WORK/disk.img"
mkfs.ext4 -q -F -d "$WORK/root" "$WORK/disk.img"
"$PY" - "$WORK/disk.img" >"$WORK/instance" <<'PY'
import base64, hashlib, sys
import boto3
BLOCK = 512 * 1024
ebs, ec2 = boto3.client("ebs"), boto3.client("ec2")
# The volume's contents, written through the EBS direct API as a snapshot.
snap = ebs.start_snapshot(VolumeSize=1, Description="example seed")["SnapshotId"]
written = 0
with open(sys.argv[1], "rb") as f:
    index = 0
    while block := f.read(BLOCK):
        if block.strip(b"\0"):
            ebs.put_snapshot_block(SnapshotId=snap, BlockIndex=index, BlockData=block,
                                   DataLength=BLOCK, ChecksumAlgorithm="SHA256",
                                   Checksum=base64.b64encode(hashlib.sha256(block).digest()).decode())
            written += 1
        index += 1
ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=written)
vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
group = ec2.create_security_group(GroupName="web", Description="the workload's group", VpcId=vpc)["GroupId"]
ami = ec2.describe_images()["Images"][0]["ImageId"]
instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             SubnetId=subnet, SecurityGroupIds=[group],
                             BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                                   "Ebs": {"SnapshotId": snap, "DeleteOnTermination": True}}],
                             )["Instances"][0]["InstanceId"]
print(instance, group)
print(f"instance {instance} in {vpc}, group {group}; its volume: {written} blocks of 512 KiB written", file=sys.stderr)
PY
read -r INSTANCE GROUP <"$WORK/instance"

step "2. custody serve, with a playbook"
export EXAMPLE_GUARDDUTY_SECRET="example-secret-$RANDOM$RANDOM"
export EXAMPLE_READ_TOKEN="example-read-$RANDOM$RANDOM"
cat >"$WORK/serve.toml" <<'TOML'
[server]
bind = "127.0.0.1:0"   # any free port; the address is printed on stdout
read_token_env = "EXAMPLE_READ_TOKEN"   # reads jobs, cases and /metrics

[[source]]
name = "guardduty"
kind = "guardduty"
auth = "hmac"
secret_env = "EXAMPLE_GUARDDUTY_SECRET"

[[rule]]
name = "exempt"
tag = "custody:exempt=approved-by-ir"   # a value only the IR role may set
action = "record"

[[rule]]
name = "ec2-compromise"
source = "guardduty"
finding_type = "UnauthorizedAccess:EC2/*"
min_severity = 7.0
action = "respond"
memory = false         # the emulator cannot run the SSM agent
process = "full"       # then read the disk in place onto the case's timeline

[[rule]]
name = "ec2-lower"
source = "guardduty"
resource_type = "Instance"
action = "acquire_disk"
TOML
sed 's/^/    /' "$WORK/serve.toml"
"$CUSTODY_BIN" --no-progress serve --config "$WORK/serve.toml" >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$WORK/serve.out")"
[ -n "$ADDR" ] || { echo "serve-end-to-end: the server did not start: $(cat "$WORK/serve.err")" >&2; exit 2; }
echo "listening on $ADDR"

step "3. A GuardDuty finding (SSH brute force, severity 8) on $INSTANCE, signed"
"$PY" - "$ROOT/examples/alerts/guardduty-ssh-bruteforce.json" "$INSTANCE" "$ADDR" >"$WORK/job" <<'PY'
import hashlib, hmac, json, os, sys, time, urllib.request
sample, instance, addr = sys.argv[1:4]
# The sample's finding, on this instance, seen now: on the timeline it
# stands minutes after the login it reports.
now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
body = open(sample).read().replace("i-0a1b2c3d4e5f67890", instance).replace("2026-03-14T09:27:03.512Z", now).encode()
t = str(int(time.time()))
sig = hmac.new(os.environ["EXAMPLE_GUARDDUTY_SECRET"].encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
req = urllib.request.Request(f"http://{addr}/v1/alerts/guardduty", data=body, method="POST",
                             headers={"Content-Type": "application/json", "X-Custody-Signature": f"t={t},v1={sig}"})
with urllib.request.urlopen(req) as r:
    answer = json.load(r)
    print(f"HTTP {r.status}: {json.dumps(answer)}", file=sys.stderr)
print(answer["accepted"][0]["job"])
PY
JOB="$(cat "$WORK/job")"

step "4. The job, until it ends"
"$PY" - "$ADDR" "$JOB" >"$WORK/case" <<'PY'
import json, os, sys, time, urllib.request
addr, job = sys.argv[1:3]
view = urllib.request.Request(f"http://{addr}/v1/jobs/{job}",
                              headers={"Authorization": f"Bearer {os.environ['EXAMPLE_READ_TOKEN']}"})
for _ in range(600):
    with urllib.request.urlopen(view) as r:
        j = json.load(r)
    if j["state"] in ("done", "failed"):
        break
    time.sleep(0.2)
print(f"job {job}: {j['state']} (case {j['case']})", file=sys.stderr)
end = j["steps"][-1]["detail"]
for result in end.get("results", []):
    for phase in result["phases"]:
        why = f"  ({phase['detail'][0]})" if phase["status"] != "done" and phase["detail"] else ""
        print(f"  {phase['phase']:<8} {phase['status']}{why}", file=sys.stderr)
    print(f"  artefacts: {', '.join(result['artefacts'])}", file=sys.stderr)
if j["state"] != "done":
    print(json.dumps(end, indent=2), file=sys.stderr)
    sys.exit(1)
print(j["case"])
PY
CASE="$(cat "$WORK/case")"

step "5. The instance is isolated"
"$PY" - "$INSTANCE" "$GROUP" <<'PY'
import sys
import boto3
instance, group = sys.argv[1:3]
i = boto3.client("ec2").describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
now = [g["GroupName"] + " " + g["GroupId"] for g in i["SecurityGroups"]]
print(f"{instance} ({i['State']['Name']}): security groups now {now}; its own group {group} removed")
sys.exit(0 if group not in str(now) else 1)
PY

# The server holds the ledger while it runs; stopping it (SIGTERM) lets
# running jobs finish first.
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""

step "6. Its disk is in the evidence store, and the case verifies"
custody show "$CASE"
custody verify "$CASE"
IMAGE_ID="$(custody --json show "$CASE" | "$PY" -c 'import json,sys; print(next(a["id"] for a in json.load(sys.stdin) if a["kind"] == "disk_image"))')"
custody export "$CASE" "$IMAGE_ID" -o "$WORK/acquired.img"
printf 'read back from the acquired image: '
debugfs -R "cat /evidence.txt" "$WORK/acquired.img" 2>/dev/null
cmp "$WORK/disk.img" "$WORK/acquired.img" && echo "the acquired image is the volume, bit for bit"

step "7. What the disk holds, on the case's timeline next to the alert"
custody timeline "$CASE" 'source:host source:alert'
custody timeline "$CASE" 'source:fs target:/var/log/auth.log'

step "8. The ledger: every step signed, with the finding as its reason"
custody ledger verify
echo
echo "end to end: alert accepted, instance isolated, disk acquired, case verified"
