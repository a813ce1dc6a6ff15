import sys,collections
def load(p):
    rows={}
    for line in open(p):
        if not line.startswith('| ') or line.startswith('| hop') : continue
        c=[x.strip() for x in line.strip().strip('|').split('|')]
        if len(c)<16 or c[4]!='segue': continue
        rows[(c[0],c[1],c[2],c[3])]=c
    return rows
files=sys.argv[1:]
for f in files:
    r=load(f)
    cnt=collections.Counter()
    for k,c in r.items():
        for i,g in zip(range(12,16),['continuity','rebuffer','start','ttff']):
            if c[i]=='yes': cnt[g,'all']+=1; cnt[g,k[0]]+=1
    n=len(r)
    print(f, n, {g: f"{cnt[g,'all']}/{n} (lm {cnt[g,'last-mile']}, or {cnt[g,'origin']})" for g in ['continuity','rebuffer','start','ttff']})
if len(files)==2:
    a,b=load(files[0]),load(files[1])
    for k in sorted(a):
        if k in b:
            ch=[g for i,g in zip(range(12,16),['cont','rebuf','start','ttff']) if a[k][i]!=b[k][i]]
            if ch: print(k, {g:(a[k][i],b[k][i]) for i,g in zip(range(12,16),['cont','rebuf','start','ttff']) if g in ch}, 'start',a[k][9],'->',b[k][9],'ttff',a[k][10],'->',b[k][10], 'stalls', a[k][7],'->',b[k][7])
