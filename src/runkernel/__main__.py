from runkernel.entrypoints.cli import main

main()
