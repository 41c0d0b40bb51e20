import sys

from napari_segflow.cli import main

sys.exit(main())
