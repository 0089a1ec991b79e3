# Sourced by the experiment scripts: `stage NAME COMMAND...` runs COMMAND unless
# $OUT/NAME/final exists (a finished stage), and prints its wall time.
stage() {
    local name=$1; shift
    if [[ -d "$OUT/$name/final" ]]; then echo "$name: done, skipped"; return; fi
    local start; start=$(date +%s)
    "$@"
    echo "$name: $(($(date +%s) - start))s"
}
