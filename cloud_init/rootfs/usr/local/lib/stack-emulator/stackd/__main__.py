import sys

from stackd.main import main

sys.exit(main(sys.argv[1:]))
