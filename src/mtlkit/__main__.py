from mtlkit.cli import main

main()
