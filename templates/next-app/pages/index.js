import { useState } from 'react';
import Greeting from '../components/Greeting';

export default function Home() {
  const [count, setCount] = useState(0);
  return (
    <main style={{ font: '16px/1.6 system-ui, sans-serif', maxWidth: '40rem', margin: '2rem auto' }}>
      <Greeting />
      <p>
        Edit <code>components/Greeting.js</code>: Fast Refresh updates the page and keeps the count.
      </p>
      <button type="button" onClick={() => setCount((c) => c + 1)}>
        Clicked {count} times
      </button>
    </main>
  );
}
