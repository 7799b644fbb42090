#!/bin/sh
# Memory acquisition on the suspect instance, sent by `custody acquire memory`
# through SSM Run Command (AWS-RunShellScript, which runs it with `sh` as
# root). POSIX sh: `sh` is dash on Debian and Ubuntu.
#
# custody puts these above the script (it never logs them: they hold
# presigned URLs):
#   CUSTODY_PART_SIZE  bytes per part
#   CUSTODY_PARTS      parts the URLs cover
#   CUSTODY_URL        presigned UploadPart URL of the staging key, with
#                      @PART@ for the part number and @SIG@ for its signature
#   CUSTODY_SIGS       the signature of each part, in order, space-separated
#   CUSTODY_AVML_URL   optional presigned GET of an avml build
#   CUSTODY_AVML_SHA256  its SHA-256, checked before it runs
# The URLs can write parts of that one key and nothing else, and expire:
# the host never holds credentials.
#
# It prints `custody-memory: parts=N sha256=HEX` on success; any failure
# exits non-zero, so the command fails and custody records why.

# Stop at the first error or unset variable: half a capture must not look done.
set -eu
# Parts and the avml binary are for root's eyes only.
umask 077

fail() {
	echo "custody-memory: error: $*" >&2
	exit 1
}

: "${CUSTODY_PART_SIZE:?}" "${CUSTODY_PARTS:?}" "${CUSTODY_URL:?}" "${CUSTODY_SIGS:?}"
for tool in curl split sha256sum tee mkfifo sed; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# Parts wait in RAM (/dev/shm), never on disk: writing there would overwrite
# unallocated blocks a disk image may still need.
work=$(mktemp -d /dev/shm/custody.XXXXXX) || fail "cannot create a working directory in /dev/shm"
tooldir=""
cleanup() {
	rm -rf "$work"
	if [ -n "$tooldir" ]; then rm -rf "$tooldir"; fi
}
trap cleanup EXIT
# SSM stops a command that runs past its timeout with a signal: clean up then too.
trap 'exit 1' HUP INT TERM

if [ -n "${CUSTODY_AVML_URL:-}" ]; then
	: "${CUSTODY_AVML_SHA256:?}"
	# The operator's build, checked against the digest they gave before it
	# runs as root. /dev/shm may be mounted noexec: try the next place.
	for dir in /dev/shm /run /var/tmp; do
		tooldir=$(mktemp -d "$dir/custody-avml.XXXXXX" 2>/dev/null) || continue
		curl --fail --silent --show-error --retry 3 --output "$tooldir/avml" "$CUSTODY_AVML_URL" ||
			fail "cannot download avml"
		echo "$CUSTODY_AVML_SHA256  $tooldir/avml" | sha256sum -c --status ||
			fail "the downloaded avml does not match its SHA-256 $CUSTODY_AVML_SHA256"
		chmod 700 "$tooldir/avml"
		if "$tooldir/avml" --version >/dev/null 2>&1; then
			break
		fi
		rm -rf "$tooldir"
		tooldir=""
	done
	[ -n "$tooldir" ] || fail "avml cannot run from /dev/shm, /run or /var/tmp"
	avml="$tooldir/avml"
else
	avml=$(command -v avml) || fail "avml is not on PATH, and no avml build was given (--avml)"
fi

# Uploads one part, run by split for each: split names it in $FILE (suffix =
# part number) and gives its bytes on stdin. A part is buffered first because
# a presigned UploadPart needs its length up front. Only the part number and
# the signature differ between the parts' URLs.
# shellcheck disable=SC2016 # expanded by the shell split starts, not here
put_part='set -eu
n=$(echo "${FILE##*.}" | sed "s/^0*//")
[ "$n" -le "$CUSTODY_PARTS" ] || { echo "custody-memory: error: the image is larger than the $CUSTODY_PARTS parts planned" >&2; exit 1; }
sig=$(printf "%s\n" "$CUSTODY_SIGS" | tr " " "\n" | sed -n "${n}p")
[ -n "$sig" ] || { echo "custody-memory: error: no URL for part $n" >&2; exit 1; }
url=$(printf "%s\n" "$CUSTODY_URL" | sed "s/@PART@/$n/; s/@SIG@/$sig/")
cat >"$FILE"
curl --fail --silent --show-error --retry 5 --output /dev/null --upload-file "$FILE" "$url" ||
	{ echo "custody-memory: error: the upload of part $n failed" >&2; exit 1; }
rm -f "$FILE"
echo "$n" >>"$CUSTODY_WORK/parts"'
CUSTODY_WORK=$work
export CUSTODY_PART_SIZE CUSTODY_PARTS CUSTODY_URL CUSTODY_SIGS CUSTODY_WORK

# The image's SHA-256 as the host produced it, for custody to compare with
# what it reads back from the bucket.
mkfifo "$work/hash"
sha256sum <"$work/hash" >"$work/sha256" &
hasher=$!

# avml writes LiME to stdout (it picks its source for a stream itself);
# without pipefail in POSIX sh, each stage's failure is noted in a file.
{ "$avml" /dev/stdout || echo "$?" >"$work/avml.failed"; } |
	{ tee "$work/hash" || echo "$?" >"$work/tee.failed"; } |
	split -b "$CUSTODY_PART_SIZE" -a 5 --numeric-suffixes=1 --filter="$put_part" - "$work/part." ||
	fail "the upload failed"
wait "$hasher" || fail "the image could not be hashed"
[ ! -e "$work/avml.failed" ] || fail "avml failed (exit $(cat "$work/avml.failed"))"
[ ! -e "$work/tee.failed" ] || fail "the image could not be hashed while streaming"
[ -s "$work/parts" ] || fail "avml produced no data"

echo "custody-memory: parts=$(wc -l <"$work/parts" | tr -d ' ') sha256=$(cut -c1-64 "$work/sha256")"
