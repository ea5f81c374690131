#!/bin/bash
# The selective scan's forward+backward at (256, 40, 256, 16), where the host sets the eager
# time, for two checkouts of src/ in alternating fresh processes (the host's speed drifts over
# minutes and differs between machines, so one process of each says little):
# scripts/dev/scan_eager_repeat.py ROUNDS times for each, REPEATS medians per process, ARGS
# passed on (--graph for device time, --shape B T Dm N). "old" is OLD_SRC, "new" this
# checkout's src. Old code: `git archive REV src | tar -x -C .old` here (.old git-ignored
# through .git/info/exclude), and carry .old.
# usage: scripts/gpu/scan_eager_ab.sh OLD_SRC [ROUNDS] [REPEATS] [ARGS...]
old=${1:?old src directory}
rounds=${2:-5}
repeats=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
export PYTHONUNBUFFERED=1
for i in $(seq "$rounds"); do
  for side in old new; do
    src=src
    [ "$side" = old ] && src=$old
    PYTHONPATH=$src python scripts/dev/scan_eager_repeat.py --repeats "$repeats" "$@" \
      | sed "s/^/$side $i: /"
  done
done
