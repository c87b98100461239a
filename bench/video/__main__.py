from bench.video import main

main()
