#!/bin/bash
# run.sh BIN... - runs each unit-test binary (TAP), then prints "N passed, N failed".
set -u
passed=0 failed=0 broken=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    p=$(grep -c '^ok ' <<<"$out"); f=$(grep -c '^not ok ' <<<"$out")
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then
        echo "FAIL ${t##*/} (exit $rc)"; grep -E '^(not ok|#)' <<<"$out" | head -40
        [ "$f" -eq 0 ] && broken=$((broken + 1))
    else
        echo "ok   ${t##*/}: $p checks"
    fi
done
failed=$((failed + broken))
echo "unit: $passed passed, $failed failed"
[ $failed -eq 0 ]
