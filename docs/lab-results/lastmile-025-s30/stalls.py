import csv,glob,sys,collections
# usage: stalls.py label=glob ...
for arg in sys.argv[1:]:
    label,pat=arg.split('=',1)
    runs=0;stall_runs=0;stall_plays=0;plays=0;stall_ms=0;starts=[];ttffs=[];cells=collections.Counter()
    for f in sorted(glob.glob(pat)):
        rows=list(csv.DictReader(open(f)))
        runs+=1
        st=[r for r in rows if int(r['stalls'] or 0)>0]
        if st: stall_runs+=1; cells[f.split('/')[-2]]+=1
        stall_plays+=len(st);plays+=len(rows)
        stall_ms+=sum(float(r['stall_ms'] or 0) for r in rows)
        starts+=[float(r['startup_ms']) for r in rows if r['startup_ms']]
        ttffs+=[float(r['ttff_ms']) for r in rows if r['ttff_ms']]
    starts.sort();ttffs.sort()
    q=lambda xs,p: xs[min(len(xs)-1,int(p*len(xs)))] if xs else float('nan')
    print(f"{label}: seed-runs {runs}, with a stall {stall_runs}, stalled plays {stall_plays}/{plays}, stall ms {stall_ms:.0f}, start p50 {q(starts,.5):.0f} p95 {q(starts,.95):.0f}, ttff p50 {q(ttffs,.5):.0f} p95 {q(ttffs,.95):.0f}")
