"""`holoeb alignment` (holoeb.alignment_experiment): distributions of the per-example cosine
between d_beta u* (exact) and RBP's delta for varying asymmetry and depth (generalized hEP paper, Fig. 2c,d), and
the check of Eq. 11 (d ~ delta - 2 S^{-1} A delta) on a small net with dense Jacobians.
Writes <out>/alignment.json and <out>/alignment.png.

    holoeb alignment --out runs/alignment
"""


def register(subparsers):
    p = subparsers.add_parser("alignment", help="cosine(d_beta u*, delta) distributions vs asymmetry/depth + Eq. 11 check")
    p.add_argument("--out", default="runs/alignment")
    p.add_argument("--model", default="mlp")
    p.add_argument("--width", type=int, default=256, help="hidden width of the distribution nets")
    p.add_argument("--depth", type=int, default=2, help="hidden layers for the asymmetry sweep")
    p.add_argument("--asymmetry-deg", type=float, nargs="+", default=[0.0, 15.0, 30.0, 45.0, 60.0, 90.0])
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4], help="hidden layers for the depth sweep")
    p.add_argument("--depth-asymmetry-deg", type=float, default=45.0, help="initial angle of the depth sweep")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--num-examples", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--T-free", dest="T_free", type=int, default=200)
    p.add_argument("--eq11-width", type=int, default=32, help="hidden width of the small nets of the Eq. 11 check")
    p.add_argument("--eq11-examples", type=int, default=10)
    p.add_argument("--eq11-asymmetry-deg", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0, 20.0, 45.0, 90.0])
    p.add_argument("--layer", type=int, default=0, help="0: cosine over all layers (default); l >= 1: layer l only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args):
    from holoeb.alignment_experiment import run_alignment_experiment

    run_alignment_experiment(
        args.out, model=args.model, width=args.width, depth=args.depth, asymmetry_deg=args.asymmetry_deg,
        depths=args.depths, depth_asymmetry_deg=args.depth_asymmetry_deg, dataset=args.dataset, data_dir=args.data_dir,
        num_examples=args.num_examples, batch_size=args.batch_size, T_free=args.T_free, eq11_width=args.eq11_width,
        eq11_examples=args.eq11_examples, eq11_asymmetry_deg=args.eq11_asymmetry_deg, layer=args.layer, seed=args.seed)
    return 0
