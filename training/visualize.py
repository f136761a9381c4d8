"""Watch or record a policy (= `pidog visualize`) in MuJoCo's viewer.

    python training/visualize.py --gait trot
    python training/visualize.py --model outputs/<exp>/final_model.zip --record walk.mp4 --episodes 2

The viewer and recorder are `training/viewer.py`.
"""

import sys

if __name__ == "__main__":
    from training.cli import main
    sys.exit(main(["visualize", *sys.argv[1:]], prog="visualize.py"))
