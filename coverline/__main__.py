from coverline.cli import main

main()
