#!/bin/sh
# Container entrypoint: size the CPU thread pools to the CPU quota the container really has, then
# run the command. Without this, torch starts one thread per *host* core: a container limited to
# 2 CPUs on a 64-core host would run 64 threads and spend its quota fighting over 2 cores.
# OMP_NUM_THREADS / NMT_THREADS set by the user win; setting either one sets both.
set -eu

# Whole CPUs allowed by the cgroup quota (rounded up), or nothing when there is no quota.
cgroup_cpus() {
    # cgroup v2: "max 100000" (no quota) or "150000 100000" (1.5 CPUs).
    if [ -r /sys/fs/cgroup/cpu.max ]; then
        read -r quota period </sys/fs/cgroup/cpu.max || true
        case "${quota:-max}/${period:-0}" in
            max/* | */0 | *[!0-9/]*) ;;
            *) echo $(((quota + period - 1) / period)); return ;;
        esac
    fi
    # cgroup v1: cfs_quota_us is -1 when there is no quota.
    for dir in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup/cpuacct,cpu; do
        [ -r "$dir/cpu.cfs_quota_us" ] && [ -r "$dir/cpu.cfs_period_us" ] || continue
        quota=$(cat "$dir/cpu.cfs_quota_us")
        period=$(cat "$dir/cpu.cfs_period_us")
        case "$quota/$period" in
            -* | */0 | *[!0-9/]*) ;;
            *) echo $(((quota + period - 1) / period)); return ;;
        esac
    done
}

if [ -z "${OMP_NUM_THREADS:-}" ] && [ -z "${NMT_THREADS:-}" ]; then
    # nproc already honours the cpuset (--cpuset-cpus); the quota (--cpus) may be smaller.
    threads=$(nproc 2>/dev/null || echo 1)
    quota_cpus=$(cgroup_cpus)
    if [ -n "$quota_cpus" ] && [ "$quota_cpus" -lt "$threads" ]; then
        threads=$quota_cpus
    fi
    [ "$threads" -ge 1 ] || threads=1
    OMP_NUM_THREADS=$threads
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$NMT_THREADS}
NMT_THREADS=${NMT_THREADS:-$OMP_NUM_THREADS}
export OMP_NUM_THREADS NMT_THREADS

exec "$@"
