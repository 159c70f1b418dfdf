#!/usr/bin/env python3
"""Work a resumed copy redoes: kills `rbdcp copy` of a 64 MiB file (at 16 MiB/s) from outside
at 10 random moments, then counts the MiB the killed run had written above its recorded mark
(all of which the rerun writes again), and checks the rerun ends identical.
Usage: python3 bench/redo.py [rbdcp copy flags...]   (needs target/release/rbdcp)"""
import os, subprocess, time, random, json, sys
B=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "rbdcp")
d=os.path.join(os.environ.get("TMPDIR", "/tmp"), "rbdcp-redo"); os.makedirs(d, exist_ok=True); os.chdir(d)
if not os.path.exists("src.img"):
    with open("src.img","wb") as f: f.write(os.urandom(64<<20))
args = sys.argv[1:]
res=[]
random.seed(1)
for i in range(10):
    for n in os.listdir("."):
        if n != "src.img": os.remove(n)
    p = subprocess.Popen([B,"copy","src.img","dst.img","--bps-limit","16M"]+args, stderr=subprocess.DEVNULL)
    time.sleep(random.uniform(0.5, 3.5)); p.kill(); p.wait()
    try: rec=json.load(open(".dst.img.rbdcp-partial.resume"))
    except Exception as e: print("no record", e); continue
    mark=rec["mark"]
    data=open(".dst.img.rbdcp-partial","rb").read()
    redo=sum(1 for o in range(mark, len(data), 1<<20) if any(data[o:o+4096]))  # MiB blocks written above the mark
    out=subprocess.run([B,"copy","src.img","dst.img","--json"]+args, capture_output=True)
    v=json.loads(out.stdout); ok = open("dst.img","rb").read()==open("src.img","rb").read()
    res.append(redo); print(f"mark {mark>>20} MiB, written above it {redo} MiB, resumed_from {v['resumed_from']}, identical {ok}")
print("mean redone MiB:", sum(res)/len(res), "max", max(res))
