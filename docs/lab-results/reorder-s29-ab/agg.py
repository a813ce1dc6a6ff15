import csv,sys,glob,statistics as st
for pat in sys.argv[1:]:
    xs=[];tt=[];stalls=0;n=0
    for d in sorted(glob.glob(pat)):
        try: r=list(csv.DictReader(open(d+'/plays.csv')))
        except Exception: continue
        n+=1
        for x in r:
            if x['startup_ms']: xs.append(float(x['startup_ms']))
            if x['ttff_ms']: tt.append(float(x['ttff_ms']))
            stalls+=int(x['stalls'] or 0)
    xs.sort()
    q=lambda p: xs[min(len(xs)-1,int(p*len(xs)))]
    print(f"{pat:40s} runs {n} plays {len(xs)} start mean {st.mean(xs):.0f} p50 {q(.5):.0f} p90 {q(.9):.0f} max {xs[-1]:.0f} ttff mean {st.mean(tt):.0f} stalls {stalls}")
