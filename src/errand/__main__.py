from errand.cli import main

main()
