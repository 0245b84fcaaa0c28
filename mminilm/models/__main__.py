"""`python -m mminilm.models TEACHER`: locate (and convert once, if needed) a teacher; print its dir."""

from mminilm.models.teacher import main

raise SystemExit(main())
