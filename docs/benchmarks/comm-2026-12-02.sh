cd /work/main
M=artifacts/bin/MiniSeq.Cli/release/miniseq.dll
lscpu | grep "Model name"; git rev-parse --short HEAD; date
for round in 1 2; do
  echo "== round $round: 1 process x 2 threads, data-parallel batch (2 x 16384)"
  dotnet $M train --model /tmp/dp/small --tokens /tmp/dp/tokens-2x16k.json --steps 4 --threads 2 --mst-mlp auto --mst-lm auto --checkpoint on 2>&1 | grep -E "after the first step|loss first"
  echo "== round $round: data parallel 2 ranks x 1 thread"
  mpirun -np 2 --allow-run-as-root --bind-to none dotnet $M train --model /tmp/dp/small --tokens /tmp/dp/tokens-2x16k.json --steps 4 --threads 1 --mst-mlp auto --mst-lm auto --checkpoint on --metrics /tmp/comm/dp$round.jsonl 2>&1 | grep -E "after the first step|loss first|collectives|step [0-9]"
  echo "== round $round: 1 process x 2 threads, 1 x 16384"
  dotnet $M train --model /tmp/dp/small --tokens /tmp/dp/t1x16384.json --steps 4 --threads 2 --mst-mlp auto --mst-lm auto --checkpoint on 2>&1 | grep -E "after the first step|loss first"
  echo "== round $round: Ulysses 2 ranks x 1 thread"
  mpirun -np 2 --allow-run-as-root --bind-to none dotnet $M train --model /tmp/dp/small --tokens /tmp/dp/t1x16384.json --steps 4 --threads 1 --mst-mlp auto --mst-lm auto --checkpoint on --sequence-parallel 2 --metrics /tmp/comm/sp$round.jsonl 2>&1 | grep -E "after the first step|loss first|collectives|step [0-9]"
done
date
