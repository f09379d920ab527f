from msstore.cli import main

main()
