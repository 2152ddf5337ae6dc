from flowsentinel.cli import main
import sys
sys.exit(main())
