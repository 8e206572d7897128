#!/bin/bash
# runs the issue-14 figures one command at a time; logs load average around each
cd /work/wt/bench
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/benchhub REDIS_URL=redis://127.0.0.1:6379/9
LOG=bench/results/i14/drive.log
run() {  # name, hub(1/0), timeout, bench args
  local name=$1 hub=$2 limit=$3; shift 3
  local cmd="CHAT_FANOUT_HUB=$hub make -o .venv/.installed bench BENCH_ARGS='$* --results bench/results/i14/$name'"
  echo "=== $name $(date -u +%T) start load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  echo "cmd: DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL $cmd" >> $LOG
  CHAT_FANOUT_HUB=$hub timeout -k 20 $limit make -o .venv/.installed bench BENCH_ARGS="$* --results bench/results/i14/$name" > bench/results/i14/$name.out 2>&1
  echo "rc=$? $name $(date -u +%T) end load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $LOG
  grep -iE "MET|MISSED|cpu|measured" bench/results/i14/$name.out | tail -5 >> $LOG
}
for phase in "$@"; do
  case $phase in
    rate) run rate200-hub-1 1 600 --goal rate200 --procs 2
          run rate200-old-1 0 600 --goal rate200 --procs 2
          run rate200-hub-2 1 600 --goal rate200 --procs 2
          run rate200-old-2 0 600 --goal rate200 --procs 2 ;;
    fan)  run fanout10000-hub 1 600 --goal fanout10000 --procs 2
          run fanout10000-old 0 480 --goal fanout10000 --procs 2 ;;
    frames) run frames-hub 1 480 --goal frames --procs 2 ;;
    soak) run soak-hub 1 2400 --goal soak --procs 2 --soak-seconds 1800 ;;
  esac
done
echo "=== all done $(date -u +%T)" >> $LOG
