from augcam.cli import main

main()
