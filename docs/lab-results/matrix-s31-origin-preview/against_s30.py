import csv,sys
# usage: cmp.py new_matrix.csv ref_matrix.csv(with nginx + old segue)
new={ (r['hop'],r['bitrate_mbps'],r['rtt_ms'],r['loss']):r for r in csv.DictReader(open(sys.argv[1])) if r['system']=='segue'}
ref={}
for r in csv.DictReader(open(sys.argv[2])): ref[(r['hop'],r['bitrate_mbps'],r['rtt_ms'],r['loss'],r['system'])]=r
tot={'cont':0,'start':0,'ttff':0,'rebuf':0}; n=0
for k,r in sorted(new.items(), key=lambda kv:(kv[0][0],float(kv[0][1]),float(kv[0][2]),kv[0][3])):
    ng=ref.get(k+('nginx-hls',)); old=ref.get(k+('segue',))
    if not ng: continue
    n+=1
    cont = int(r['start_failures'])==0 and float(r['stalls_per_play'])==0 and r['byte_exact']==r['plays']
    st = float(r['startup_p95_ms'])<=float(ng['startup_p95_ms'])
    tf = float(r['ttff_p95_ms'])<=0.5*float(ng['ttff_p95_ms'])
    rb = float(r['rebuffer_ratio'])<=float(ng['rebuffer_ratio'])
    tot['cont']+=cont; tot['start']+=st; tot['ttff']+=tf; tot['rebuf']+=rb
    print(f"{'/'.join(k):28s} stalls {r['stalls_per_play']:>6} start {old['startup_p95_ms']:>7}->{r['startup_p95_ms']:>7} (ng {ng['startup_p95_ms']:>7}) ttff {old['ttff_p95_ms']:>7}->{r['ttff_p95_ms']:>7} ratio {float(r['ttff_p95_ms'])/float(ng['ttff_p95_ms']):.2f} {'' if cont else 'CONT'} {'' if st else 'START'} {'' if tf else 'TTFF'}")
print(n, tot)
