# Stalls, playback start and TTFF over the seeds of each build: python3 stalls.py pre floor
import csv,glob,sys
for tag in sys.argv[1:]:
    tot_st=0; plays=0; runs_st=0; runs=0; starts=[]; ttffs=[]; sms=0
    for c in sorted(glob.glob(f'{tag}/seed*/*/plays.csv')):
        rows=list(csv.DictReader(open(c))); runs+=1
        st=sum(int(r['stalls']) for r in rows); tot_st+=st; runs_st+= st>0; plays+=len(rows)
        sms+=sum(float(r['stall_ms']) for r in rows)
        starts+=[float(r['startup_ms']) for r in rows if r['startup_ms']]
        ttffs+=[float(r['ttff_ms']) for r in rows if r['ttff_ms']]
        if st: print(tag, c.split('/')[1], c.split('/')[2], [(r['id'],r['stalls'],r['stall_ms']) for r in rows if int(r['stalls'])])
    starts.sort(); ttffs.sort()
    q=lambda v,p: v[min(len(v)-1,int(p*len(v)))]
    print(tag, f"runs {runs} stalled {runs_st} stalls {tot_st} {sms:.0f} ms plays {plays} start p50 {q(starts,.5):.0f} p95 {q(starts,.95):.0f} max {starts[-1]:.0f} ttff p50 {q(ttffs,.5):.0f} p95 {q(ttffs,.95):.0f}")
