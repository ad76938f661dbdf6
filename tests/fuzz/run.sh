#!/bin/bash
# run.sh BUILD SECONDS TIMEOUT RSS_MB TARGET... - runs each libFuzzer target for SECONDS over
# its seed corpus (tests/fuzz/corpus/<t>/) plus what earlier runs found (BUILD/corpus/<t>/),
# with its dictionary if there is one. Ends with one line per target and fails if any target
# crashed, leaked, timed out or went over RSS_MB.
set -u
b=$1 secs=$2 timeout=$3 rss=$4
shift 4
failed=0 lines=()
for t in "$@"; do
    bin=$b/fuzz_$t log=$b/logs/$t.log
    mkdir -p "$b/corpus/$t" "$b/artifacts/$t" "$b/logs" "tests/fuzz/corpus/$t"
    args=(-max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss" -print_final_stats=1
          -artifact_prefix="$b/artifacts/$t/")
    [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
    echo "fuzz: $t for ${secs}s (log $log)"
    start=$SECONDS
    "$bin" "${args[@]}" "$b/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    status=ok
    if [ $rc -ne 0 ]; then
        status="FAILED (exit $rc)"
        failed=$((failed + 1))
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant failed|.*runtime error|artifact_prefix|Test unit written)' \
            "$log" | head -n 20
    fi
    lines+=("fuzz: $t: ${execs:-?} execs in $((SECONDS - start))s, ${cov:-cov: ?}: $status")
done
printf '%s\n' "${lines[@]}"
echo "fuzz: $(( $# - failed )) targets clean, $failed failed"
[ $failed -eq 0 ]
