# Shared by the demo and benchmark scripts (sourced, not run).

# start_emulator WORKDIR [cognito-emulator flags...]
# Starts the bundled emulator (built in $bin) on a free loopback port; sets $endpoint and
# $emu_pid. The caller stops it (kill "$emu_pid").
start_emulator() {
  local work="$1"; shift
  "$bin/cognito-emulator" --listen 127.0.0.1:0 "$@" > "$work/emulator.out" 2> "$work/emulator.err" &
  emu_pid=$!
  for _ in $(seq 600); do
    grep -q '^listening on ' "$work/emulator.out" 2>/dev/null && break
    kill -0 "$emu_pid" 2>/dev/null || break
    sleep 0.1
  done
  endpoint=$(sed -n 's/^listening on //p' "$work/emulator.out")
  if [ -z "$endpoint" ]; then
    echo "the emulator did not start:" >&2
    cat "$work/emulator.err" >&2
    return 1
  fi
}
