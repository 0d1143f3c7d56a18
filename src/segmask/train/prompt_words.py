"""The fillers of the adaptation prompt pool (``prompt_pool``): system messages, topics, how-to tasks, concepts,
pairs, characters, passages, sentences, follow-ups, request templates per category and math templates. Each item
belongs to the train or held-out split by a stable hash (``prompt_pool.heldout``)."""

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in one or two sentences.",
    "You are a friendly tutor who explains things simply.",
    "You are an expert who answers precisely and avoids speculation.",
    "Answer as briefly as possible.",
    "You are a patient teacher. Use simple words.",
    "You are a creative writer.",
    "Always answer in a polite and positive tone.",
    "You are a science communicator for curious teenagers.",
    "Reply with a short list when it helps.",
    "You are a careful assistant. If you are not sure, say so.",
    "You help people with everyday tasks at home.",
    "You are a cheerful assistant who likes to give examples.",
    "Keep every answer under fifty words.",
    "You are a knowledgeable librarian.",
    "You are a math tutor. Show the steps of your reasoning.",
    "You are an assistant for a busy professional. Be direct.",
    "You are a travel guide with a love of history.",
    "Explain your answers step by step.",
    "You are a kind assistant for children. Keep it simple and safe.",
]

TOPICS = [
    "the moon", "volcanoes", "honey bees", "the ocean", "rainbows", "the human heart", "dinosaurs", "electricity",
    "the Roman Empire", "photosynthesis", "the water cycle", "penguins", "the Sahara desert", "coffee", "chess",
    "the Eiffel Tower", "earthquakes", "sharks", "the solar system", "bread", "the internet", "trees", "snow",
    "elephants", "the Amazon rainforest", "gold", "the Great Wall of China", "owls", "tea", "the piano", "clouds",
    "glaciers", "butterflies", "the printing press", "the brain", "lightning", "wolves", "the Nile", "salt",
    "the bicycle", "vaccines", "cats", "dogs", "the Moon landing", "the Olympic Games", "rice", "mushrooms",
    "the sun", "whales", "ants", "chocolate", "the telephone", "Mars", "deserts", "rivers", "mountains", "frogs",
    "the Pyramids of Giza", "bamboo", "the guitar", "plastic", "recycling", "wind energy", "solar panels",
    "the stock market", "libraries", "soap", "the compass", "maps", "bats", "octopuses", "coral reefs", "tigers",
    "cheese", "the violin", "airplanes", "trains", "submarines", "rockets", "the Arctic", "Antarctica", "storms",
    "hurricanes", "tornadoes", "fossils", "crystals", "magnets", "sound", "light", "gravity", "time zones",
    "calendars", "the alphabet", "paper", "glass", "cotton", "wool", "silk", "the wheel", "fire", "bridges",
    "castles", "knights", "pirates", "the Vikings", "ancient Egypt", "ancient Greece", "the Renaissance",
    "the Industrial Revolution", "democracy", "money", "banks", "taxes", "farming", "apples", "bananas", "potatoes",
    "tomatoes", "sleep", "dreams", "memory", "laughter", "music", "painting", "sculpture", "poetry", "theatre",
    "film", "photography", "football", "basketball", "tennis", "swimming", "running", "yoga", "chess openings",
    "the periodic table", "atoms", "DNA", "cells", "bacteria", "viruses", "the immune system", "bones", "muscles",
    "the eye", "the ear", "teeth", "skin", "blood", "the lungs", "the stomach", "vitamins", "sugar", "water",
    "oxygen", "carbon", "diamonds", "iron", "copper", "the speed of light", "black holes", "stars", "galaxies",
    "comets", "the seasons", "tides", "deserts at night", "caves", "islands", "lakes", "waterfalls", "forests",
]

HOWTO_TASKS = [
    "boil an egg", "tie a tie", "make a cup of tea", "plant a tomato seed", "clean a window without streaks",
    "change a flat bicycle tire", "write a thank-you note", "save money each month", "learn a new language",
    "fall asleep faster", "make a paper airplane", "bake simple bread", "start running as a beginner",
    "organize a small closet", "prepare for a job interview", "remove a coffee stain", "care for a houseplant",
    "make a budget", "cook rice on the stove", "wash a wool sweater", "study for an exam", "read a map",
    "build a birdhouse", "make a good first impression", "keep a journal", "train a puppy to sit",
    "set up a fish tank", "make pancakes", "pack a suitcase efficiently", "stay focused while working from home",
    "write a short speech", "choose a good watermelon", "start a vegetable garden", "fix a squeaky door",
    "reduce food waste", "make a smoothie", "teach a child to ride a bike", "back up photos on a computer",
    "make a simple website", "improve my handwriting", "calm down before a test", "sharpen a kitchen knife",
    "make friends in a new city", "memorize a poem", "clean a cast iron pan", "brew coffee with a French press",
    "draw a simple cat", "plan a birthday party", "write a good email subject line", "save energy at home",
    "keep cut flowers fresh", "stretch after a run", "make a paper boat", "store fresh herbs", "do a push-up",
    "take better photos with a phone", "hang a picture straight", "learn to juggle", "make lemonade",
    "start meditating", "choose running shoes", "care for a cat", "fold a fitted sheet", "grow basil indoors",
]

CONCEPTS = [
    "inflation", "gravity", "evolution", "supply and demand", "compound interest", "the greenhouse effect",
    "machine learning", "a black hole", "photosynthesis", "democracy", "an ecosystem", "a vaccine", "the placebo "
    "effect", "recycling", "a rainbow", "the internet", "a budget", "a metaphor", "a prime number", "a fraction",
    "the speed of sound", "an atom", "friction", "a food chain", "erosion", "a volcano eruption", "the tides",
    "a leap year", "time zones", "a credit score", "renewable energy", "a computer virus", "encryption",
    "a democracy's separation of powers", "magnetism", "the water cycle", "an eclipse", "climate versus weather",
    "a noun and a verb", "a hypothesis", "percentages", "an algorithm", "the immune system", "a calorie",
    "static electricity", "a solar panel", "buoyancy", "an echo", "interest rates", "a symphony",
]

PAIRS = [
    ("cats", "dogs"), ("tea", "coffee"), ("trains", "planes"), ("books", "films"), ("summer", "winter"),
    ("the sun", "the moon"), ("rivers", "lakes"), ("running", "swimming"), ("a city", "the countryside"),
    ("paper books", "e-books"), ("solar power", "wind power"), ("frogs", "toads"), ("butter", "margarine"),
    ("a violin", "a cello"), ("a crocodile", "an alligator"), ("weather", "climate"), ("a virus", "a bacterium"),
    ("saving", "investing"), ("email", "letters"), ("walking", "cycling"),
]

CHARACTERS = [
    "a shy robot", "a brave little mouse", "an old lighthouse keeper", "a curious girl", "a lost puppy",
    "a dragon who is afraid of fire", "a baker", "a tired astronaut", "a talking tree", "a young inventor",
    "a wise owl", "a clumsy wizard", "a fisherman", "a cat who wants to fly", "two best friends",
    "a grumpy old king", "a little cloud", "a polite crocodile", "a detective dog", "a forgetful giant",
]

PASSAGES = [
    "The library will be closed on Monday for repairs. All books due that day can be returned on Tuesday "
    "without a fine. The reading room will reopen on Wednesday.",
    "Our team finished the project two days early. We would like to thank everyone who stayed late last week. "
    "There will be a small celebration in the kitchen on Friday afternoon.",
    "Honey never spoils. Archaeologists have found pots of honey in ancient Egyptian tombs that are over three "
    "thousand years old and still good to eat.",
    "The new bus line connects the train station with the university. Buses run every ten minutes during the "
    "day and every half hour at night.",
    "I bought this blender last month. It is loud, but it makes very smooth soups and it is easy to clean. "
    "The lid is a little hard to close.",
    "Octopuses have three hearts and blue blood. Two hearts pump blood to the gills, and the third pumps it to "
    "the rest of the body.",
    "Please remember to bring a water bottle, a hat and comfortable shoes to the school trip on Thursday. The "
    "bus leaves at eight in the morning.",
    "The restaurant was crowded and the food took an hour to arrive. When it came, the pasta was cold and the "
    "waiter forgot our drinks.",
    "Bamboo is one of the fastest-growing plants in the world. Some species can grow almost a metre in a single "
    "day.",
    "The meeting has been moved from 2 pm to 4 pm because the manager is travelling. The agenda stays the same.",
    "Venus is the hottest planet in our solar system, even though Mercury is closer to the Sun. Its thick "
    "atmosphere traps heat.",
    "I loved this book. The characters felt real, the ending surprised me, and I finished it in two days.",
    "Regular exercise improves sleep, mood and memory. Even a short walk every day can make a difference.",
    "The city plans to plant ten thousand trees over the next five years to cool the streets in summer.",
    "Sea otters hold hands while they sleep so that they do not drift apart.",
    "The hotel room was clean and quiet, and the staff were very helpful, but breakfast was expensive.",
]

SENTENCES = [
    "me and him goes to the market every sunday", "the cat sleeped on the sofa all day",
    "she dont like apples but she like oranges", "I has finished my homework yesterday",
    "their going to the park after school", "the weather are very nice today",
    "we was late because the bus didnt come", "he can plays the guitar very good",
    "The early bird catches the worm.", "Knowledge is power.", "Good morning, how are you today?",
    "The train leaves at seven o'clock.", "I would like a cup of coffee, please.", "Where is the nearest library?",
    "my brother have three cat and one dog", "yesterday we goes to the beach and swimmed", "she is more taller than me",
    "Can you tell me how much does this cost?", "The children was playing in the garden.", "I am agree with you.",
    "Please send me the report by Friday.", "The sun rises in the east.", "We need more milk and bread.",
    "Thank you for your help yesterday.", "the movie were very boring and to long", "He don't know nothing about it.",
]

FOLLOW_UPS = [
    "Can you explain that more simply?", "Can you give me an example?", "Why is that?", "Tell me more.",
    "Can you summarize that in one sentence?", "What is the most important part?", "Is there anything else I "
    "should know?", "Thanks! Can you make it shorter?", "What would you recommend for a beginner?",
    "How would you explain that to a child?", "Are there any common mistakes to avoid?", "What happens next?",
]

TEMPLATES: dict[str, list[str]] = {
    "facts": ["What is {topic}?", "Tell me three facts about {topic}.", "Why is {topic} important?",
              "What is the most surprising thing about {topic}?", "Where can {topic} be found?",
              "Give me a short history of {topic}.", "What do most people not know about {topic}?",
              "Describe {topic} in two sentences."],
    "howto": ["How do I {task}?", "What is the best way to {task}?", "Give me step-by-step instructions to {task}.",
              "I want to {task}. Where should I start?", "What do I need to {task}?",
              "What mistakes should I avoid when I try to {task}?"],
    "explain": ["Explain {concept} to a ten-year-old.", "Explain {concept} in one paragraph.",
                "What is the difference between {a} and {b}?", "Compare {a} and {b}.",
                "Why does {concept} matter in everyday life?", "Give me a simple analogy for {concept}."],
    "creative": ["Write a short poem about {topic}.", "Write a haiku about {topic}.",
                 "Tell me a very short story about {character}.", "Write a funny limerick about {topic}.",
                 "Write a two-sentence story about {character} and {topic}.",
                 "Suggest five creative names for a shop about {topic}.", "Write a riddle about {topic}."],
    "advice": ["I feel nervous about {task_ing}. Any advice?", "My friend wants to {task}. What should I tell them?",
               "Give me three tips to {task}.", "Is it hard to {task}?"],
    "rewrite": ["Summarize this text in one sentence:\n\n{passage}", "What is the main point of this text?\n\n"
                "{passage}", "Is the following review positive or negative?\n\n{passage}",
                "Write a title for this text:\n\n{passage}", "Correct the grammar of this sentence: {sentence}",
                "Rewrite this sentence in a more formal style: {sentence}",
                "List the key facts in this text:\n\n{passage}"],
}

MATH_TEMPLATES = [
    "{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
    "A box holds {a} pencils. How many pencils are in {b} boxes?",
    "{name} had {c} dollars and spent {a} dollars on a book. How much money is left?",
    "A train travels {a} kilometres per hour for {b} hours. How far does it go?",
    "{name} reads {a} pages a day. How many pages does {name} read in {b} days?",
    "There are {c} students and each bus holds {a}. How many buses are needed?",
    "A rectangle is {a} cm long and {b} cm wide. What is its area?",
    "{name} is {a} years old. How old will {name} be in {b} years?",
    "What is {a} times {b}?", "What is {c} minus {a}?", "What is {c} divided by {b}?",
    "A shirt costs {a} dollars. It is on sale for {b} dollars off. What is the new price?",
]
NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kim", "Leo", "Maya",
         "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara"]
